"""The three roles, kept as Django groups, and where each lands after login."""

from django.contrib.auth.models import Group, Permission
from django.db.models import Exists, OuterRef, Q

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


def with_roles(queryset, user_ref: str = "pk"):
    """``queryset`` with each role as a boolean column (``role_annotator`` …), so that the request's
    user and their roles come in one query; ``user_ref`` names the user's id in its rows."""
    return queryset.annotate(**{f"role_{role}": Exists(Group.objects.filter(name=role, user=OuterRef(user_ref)))
                                for role in ROLES})


def remember_roles(user, row) -> None:
    """Keep the roles read by ``with_roles`` (on ``row``) on ``user``, where ``roles_of`` looks first."""
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
