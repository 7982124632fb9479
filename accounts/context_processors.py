from .roles import ROLE_LABELS, roles_of


def roles(request):
    held = roles_of(request.user)
    return {"user_roles": sorted(held), "role_labels": ROLE_LABELS}
