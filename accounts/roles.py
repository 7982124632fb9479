"""The three roles, kept as Django groups, and where each lands after login."""

from django.contrib.auth.models import Group, Permission

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
ADMIN_APP_LABELS = ("accounts", "annotation", "modelserving", "training", "safety", "auth")


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
    permissions = Permission.objects.filter(content_type__app_label__in=ADMIN_APP_LABELS)
    groups[ADMIN].permissions.add(*permissions)
