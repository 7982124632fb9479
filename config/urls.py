from django.contrib import admin
from django.core.exceptions import BadRequest
from django.http import JsonResponse
from django.urls import include, path
from django.views.defaults import bad_request as django_bad_request
from django.views.defaults import page_not_found
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.serializers import AuthTokenSerializer
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response

from core import fields as strict
from core.throttles import LoginThrottle

from .health import health


class TokenLoginSerializer(AuthTokenSerializer):
    username = strict.CharField(label="Username", write_only=True, max_length=150)
    password = strict.CharField(label="Password", style={"input_type": "password"}, trim_whitespace=False,
                                     write_only=True, max_length=128)


class TokenLogin(ObtainAuthToken):
    """A token for a username and password: throttled per address; failed tries lock out (axes)."""

    serializer_class = TokenLoginSerializer

    throttle_classes = [LoginThrottle]
    throttle_scope = "login"

    def post(self, request, *args, **kwargs):
        """The user's token, made afresh once the one they had is past API_TOKEN_MAX_AGE_HOURS."""
        from accounts.backends import token_expired

        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = serializer.validated_data["user"]
        token = Token.objects.filter(user=user).first()
        if token is not None and token_expired(token.created):
            token.delete()
            token = None
        if token is None:
            token = Token.objects.create(user=user)
        return Response({"token": token.key})

    def get_serializer_context(self):
        # Django's request, not DRF's wrapper: axes marks a lockout on it, and its middleware, which
        # sees only Django's, answers 429.
        return {**super().get_serializer_context(), "request": self.request._request}

class _ServePermissions:
    """The schema and its docs are for people logged in (or holding a token) unless API_SCHEMA_PUBLIC
    (the embedded default and the tests), read when a request comes."""

    def get_permissions(self):
        from django.conf import settings

        return [AllowAny() if settings.API_SCHEMA_PUBLIC else IsAuthenticated()]


class SchemaView(_ServePermissions, SpectacularAPIView):
    pass


class DocsView(_ServePermissions, SpectacularSwaggerSplitView):
    pass


def not_found(request, exception=None):
    """404 for a URL that resolves to nothing: JSON under /api/ (what API clients and the schema
    expect), Django's page elsewhere."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)


def bad_request(request, exception=None):
    """400 for what Django refuses before a view runs (a body over DATA_UPLOAD_MAX_MEMORY_SIZE, too
    many fields): JSON under /api/."""
    if request.path.startswith("/api/"):
        said = str(exception) if isinstance(exception, BadRequest) and str(exception) else ""
        return JsonResponse({"detail": said or "Bad request (too large, or malformed)."}, status=400)
    return django_bad_request(request, exception)


handler404 = not_found
handler400 = bad_request

urlpatterns = [
    path("", include("accounts.urls")),
    path("health", health, name="health"),
    path("annotate/", include("annotation.urls")),
    path("serving/", include("modelserving.urls")),
    path("training/", include("training.urls")),
    path("safety/", include("safety.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("accounts.api_urls")),
    path("api/", include("modelserving.api_urls")),
    path("api/", include("annotation.api_urls")),
    path("api/training/", include("training.api_urls")),
    path("api/safety/", include("safety.api_urls")),
    path("api/auth/token/", TokenLogin.as_view(), name="api-token"),
    path("api/schema/", SchemaView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's initialiser as a file, so the CSP needs no inline script.
    path("api/docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
]
