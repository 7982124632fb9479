"""The three roles, kept as Django groups, and where each lands after login."""

import functools

from django.contrib.auth.models import Group, Permission
from django.db.models import Q

from core.sql import id_fits

ANNOTATOR = "annotator"
ADMIN = "admin"
RESEARCHER = "researcher"
ROLES = (ANNOTATOR, ADMIN, RESEARCHER)
ROLE_LABELS = {ANNOTATOR: "Annotator", ADMIN: "Admin", RESEARCHER: "Researcher"}
HOME_URL_NAMES = {
    ADMIN: "accounts:admin_home",
    RESEARCHER: "training:dashboard",
    ANNOTATOR: "annotation:workspace",
}
# Admins manage people and data through Django's admin for these apps.
ADMIN_APP_LABELS = ("accounts", "annotation", "modelserving", "training", "safety")
# Of django.contrib.auth, admins manage user accounts and see the role groups; they never change
# groups' or users' permissions, nor make anyone a superuser (accounts/admin.py).
ADMIN_AUTH_CODENAMES = ("view_user", "add_user", "change_user", "view_group")


def roles_of(user) -> set[str]:
    if not user.is_authenticated:
        return set()
    cached = getattr(user, "_tandem_roles", None)
    if cached is None:
        cached = set(user.groups.filter(name__in=ROLES).values_list("name", flat=True))
        if user.is_superuser:
            cached.add(ADMIN)
        user._tandem_roles = cached
    return cached


@functools.cache
def _user_with_roles_sql(by: str) -> str:
    """One statement for the request's user and their roles (a boolean column ``role_<name>`` each),
    found by the user's id or by an API token's key.

    Written by hand: this runs on every request, and compiling the same query through the ORM cost
    more CPU than anything else in authentication (bench/annotate_load.py --profile-requests).
    Plain SQL, the same on PostgreSQL and SQLite."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from rest_framework.authtoken.models import Token

    q = connection.ops.quote_name
    user_model = get_user_model()
    links = user_model.groups.through._meta
    user_column = links.get_field("user").column
    group_column = links.get_field("group").column
    user_pk = f"u.{q(user_model._meta.pk.column)}"
    columns = ", ".join(f"u.{q(field.column)}" for field in user_model._meta.concrete_fields)
    roles = ", ".join(
        f"EXISTS (SELECT 1 FROM {q(links.db_table)} ug JOIN {q(Group._meta.db_table)} g "
        f"ON g.{q(Group._meta.pk.column)} = ug.{q(group_column)} "
        f"WHERE ug.{q(user_column)} = {user_pk} AND g.name = '{role}') AS role_{role}" for role in ROLES)
    if by == "token":
        token = Token._meta
        return (f"SELECT {columns}, {roles}, t.{q(token.get_field('created').column)} AS token_created "
                f"FROM {q(user_model._meta.db_table)} u JOIN {q(token.db_table)} t "
                f"ON t.{q(token.get_field('user').column)} = {user_pk} WHERE t.{q(token.pk.column)} = %s")
    return f"SELECT {columns}, {roles} FROM {q(user_model._meta.db_table)} u WHERE {user_pk} = %s"


def user_with_roles(*, user_id=None, token_key: str | None = None):
    """The user (by id, or by an API token's key) with their roles remembered, in one query; None
    when there is no such user or token. By token, the user carries ``token_created`` too."""
    from django.contrib.auth import get_user_model

    by, value = ("token", token_key) if token_key is not None else ("id", user_id)
    if by == "id" and not id_fits(get_user_model(), value):
        return None  # no such user
    user = next(iter(get_user_model()._default_manager.raw(_user_with_roles_sql(by), [value])), None)
    if user is not None:
        remember_roles(user, user)
    return user


def remember_roles(user, row) -> None:
    """Keep the roles read with the user (``role_<name>`` on ``row``) on ``user``, where ``roles_of``
    looks first."""
    roles = {role for role in ROLES if getattr(row, f"role_{role}")}
    if user.is_superuser:
        roles.add(ADMIN)
    user._tandem_roles = roles


def has_role(user, *roles: str) -> bool:
    return bool(roles_of(user) & set(roles))


def primary_role(user) -> str | None:
    """The role whose home page a user lands on: admin, then researcher, then annotator."""
    held = roles_of(user)
    for role in (ADMIN, RESEARCHER, ANNOTATOR):
        if role in held:
            return role
    return None


def ensure_role_groups(**kwargs) -> None:
    """Create the role groups and give admins the model permissions of Tandem's apps (idempotent)."""
    groups = {role: Group.objects.get_or_create(name=role)[0] for role in ROLES}
    permissions = Permission.objects.filter(
        Q(content_type__app_label__in=ADMIN_APP_LABELS)
        | Q(content_type__app_label="auth", codename__in=ADMIN_AUTH_CODENAMES))
    # set, not add: a permission granted by an older release (auth's, all of them) is taken back.
    groups[ADMIN].permissions.set(permissions)
