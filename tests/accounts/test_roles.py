from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from accounts import services
from accounts.models import Invitation
from accounts.roles import ROLES

pytestmark = pytest.mark.django_db

PASSWORD = "correct-horse-battery-7"


def make(role, username=None):
    return services.user_create(username=username or f"{role}-1", password=PASSWORD, role=role)


def test_the_three_role_groups_exist_after_migrate():
    assert set(Group.objects.filter(name__in=ROLES).values_list("name", flat=True)) == set(ROLES)
    assert Group.objects.get(name="admin").permissions.filter(codename="change_policyvariant").exists()


def test_passwords_are_hashed_with_argon2():
    user = make("annotator")
    assert user.password.startswith("argon2$")


@pytest.mark.parametrize("role, landing", [
    ("annotator", "annotation:workspace"),
    ("admin", "accounts:admin_home"),
    ("researcher", "training:dashboard"),
])
def test_each_role_lands_on_its_own_home_after_login(client, role, landing):
    make(role)
    response = client.post(reverse("accounts:login"), {"username": f"{role}-1", "password": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse(landing)
    assert response.status_code == 200


def test_role_pages_refuse_other_roles(client):
    make("annotator")
    client.login(username="annotator-1", password=PASSWORD)
    assert client.get(reverse("training:dashboard")).status_code == 403
    assert client.get(reverse("accounts:admin_home")).status_code == 403


def test_anonymous_visitors_are_sent_to_login(client):
    response = client.get(reverse("annotation:workspace"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("accounts:login"))


def test_logout_is_a_post_and_ends_the_session(client):
    make("researcher")
    client.login(username="researcher-1", password=PASSWORD)
    assert client.get(reverse("accounts:logout")).status_code == 405
    client.post(reverse("accounts:logout"))
    assert client.get(reverse("training:dashboard")).status_code == 302


def test_there_is_no_open_sign_up(client):
    for path in ("/signup/", "/accounts/signup/", "/register/"):
        assert client.get(path).status_code == 404


def test_an_admin_invitation_link_creates_an_account_in_the_role_once(client):
    make("admin")
    client.login(username="admin-1", password=PASSWORD)
    response = client.post(reverse("accounts:admin_home"), {"role": "researcher", "email": "r@example.org"})
    link = response.context["link"]
    assert "/invite/" in link
    client.logout()
    path = link.split("testserver", 1)[1]
    response = client.post(path, {"username": "rita", "password1": PASSWORD, "password2": PASSWORD}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("training:dashboard")
    invitation = Invitation.objects.get()
    assert invitation.accepted_by.username == "rita" and invitation.accepted_by.groups.filter(name="researcher")
    client.logout()
    assert client.get(path).status_code == 410, "a used link does not work twice"


def test_invitation_token_is_not_stored_in_clear():
    invitation, token = services.invitation_create(role="annotator")
    assert token not in invitation.token_hash and invitation.token_hash == Invitation.hash_token(token)


def test_expired_invitation_is_refused_and_creates_nobody():
    invitation, token = services.invitation_create(role="annotator")
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(ValidationError, match="expired"):
        services.invitation_accept(token=token, username="late", password=PASSWORD)
    from django.contrib.auth.models import User

    assert not User.objects.filter(username="late").exists()


def test_weak_password_is_refused_with_the_validators_message():
    _, token = services.invitation_create(role="annotator")
    with pytest.raises(ValidationError, match="too common|too short"):
        services.invitation_accept(token=token, username="weak", password="password")
    assert Invitation.objects.get().accepted_at is None


def test_unknown_role_is_refused():
    with pytest.raises(ValidationError, match="Unknown role"):
        services.invitation_create(role="overlord")


# An admin (a staff account of the admin role, not a superuser) must not be able to escalate.
def test_the_admin_role_cannot_grant_superuser_or_edit_permissions(client):
    from django.contrib.auth.models import User

    admin_user = make("admin", "ada")
    other = make("annotator", "ann")
    root = User.objects.create_superuser("root", "root@example.org", PASSWORD)
    client.login(username="ada", password=PASSWORD)
    group = Group.objects.get(name="admin")
    assert not group.permissions.filter(content_type__app_label="auth", codename__in=[
        "change_group", "add_group", "change_permission", "add_permission"]).exists()
    assert client.get(f"/admin/auth/group/{group.pk}/change/").status_code in (200, 403)
    form = client.get(f"/admin/auth/user/{admin_user.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in form and 'name="user_permissions"' not in form
    data = {"username": "ada", "is_active": "on", "is_staff": "on", "is_superuser": "on",
            "groups": [group.pk], "user_permissions": [], "date_joined_0": "2026-01-01", "date_joined_1": "00:00:00",
            "last_login_0": "", "last_login_1": ""}
    client.post(f"/admin/auth/user/{admin_user.pk}/change/", data)
    admin_user.refresh_from_db()
    assert not admin_user.is_superuser
    # Changing a group's permissions is refused.
    assert client.post(f"/admin/auth/group/{group.pk}/change/", {"name": "admin", "permissions": []}).status_code == 403
    assert group.permissions.filter(codename="change_policyvariant").exists()
    # A superuser's account is out of reach; an annotator's is not.
    assert client.post(f"/admin/auth/user/{root.pk}/change/", {**data, "username": "root"}).status_code == 403
    root.refresh_from_db()
    assert root.is_superuser and root.is_active
    assert client.get(f"/admin/auth/user/{other.pk}/change/").status_code == 200
