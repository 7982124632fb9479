from django.contrib import admin
from django.urls import include, path
from rest_framework.authtoken.views import obtain_auth_token
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from .health import health

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
    path("api/auth/token/", obtain_auth_token, name="api-token"),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # The split view serves Swagger UI's initialiser as a file, so the CSP needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
]
