"""manage.py api_check_tokens: one account and API token per role, for the schema check in CI."""

import io

import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token

from accounts.roles import ROLES, primary_role

pytestmark = pytest.mark.django_db


def _run() -> list[str]:
    out = io.StringIO()
    call_command("api_check_tokens", stdout=out)
    return out.getvalue().split()


def test_prints_one_token_per_role_in_the_order_the_check_takes_them():
    tokens = _run()
    assert len(tokens) == len(ROLES) == 3
    assert [primary_role(Token.objects.get(key=key).user) for key in tokens] == list(ROLES)


def test_a_second_run_keeps_the_accounts_and_their_tokens():
    assert _run() == _run()
    assert Token.objects.count() == 3
