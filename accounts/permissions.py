"""The API's role permissions, all of them: a view names one of these, never its own."""

from rest_framework.permissions import BasePermission

from .roles import ADMIN, ANNOTATOR, RESEARCHER, has_role


class HasRole(BasePermission):
    roles: tuple[str, ...] = ()
    message = "Your role does not allow this."

    def has_permission(self, request, view):
        return bool(request.user and request.user.is_authenticated and has_role(request.user, *self.roles))


class AnyRole(HasRole):
    roles = (ANNOTATOR, ADMIN, RESEARCHER)


class StaffRole(HasRole):
    """Admins and researchers: may see which variant produced what."""

    roles = (ADMIN, RESEARCHER)


class AdminOnly(HasRole):
    roles = (ADMIN,)


class ResearcherOnly(HasRole):
    roles = (RESEARCHER,)


class AnnotatorOnly(HasRole):
    """Annotators: their dialogues, reviews, safety ratings and red-team sessions."""

    roles = (ANNOTATOR,)
