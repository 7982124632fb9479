import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from rest_framework.authtoken.models import Token

from accounts import services
from accounts.roles import ROLES


class Command(BaseCommand):
    help = ("One account per role (`<prefix>-<role>`, a random password nobody needs) and its API "
            "token, printed as one line of tokens in the order annotator, admin, researcher: what "
            "scripts/api_schema_check.sh takes after the URL. Idempotent: an existing account keeps "
            "its token. For a throwaway database (CI, a local check), never a real one.")

    def add_arguments(self, parser):
        parser.add_argument("--prefix", default="api-check")

    def handle(self, *args, prefix, **options):
        User = get_user_model()
        tokens = []
        for role in ROLES:
            username = f"{prefix}-{role}"
            user = User.objects.filter(username=username).first()
            if user is None:
                user = services.user_create(username=username, password=secrets.token_urlsafe(24), role=role)
            tokens.append(Token.objects.get_or_create(user=user)[0].key)
        self.stdout.write(" ".join(tokens))
