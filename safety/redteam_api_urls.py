"""Red-team API under /api/safety/red-team/."""

from django.urls import path

from . import redteam_api as api

urlpatterns = [
    path("sessions/", api.SessionListCreate.as_view(), name="api-redteam-sessions"),
    path("models/", api.ModelList.as_view(), name="api-redteam-models"),
    path("sessions/<int:pk>/", api.SessionDetail.as_view(), name="api-redteam-session"),
    path("sessions/<int:pk>/attempts/", api.SessionAttempts.as_view(), name="api-redteam-attempts"),
    path("sessions/<int:pk>/finish/", api.SessionFinish.as_view(), name="api-redteam-finish"),
    path("attempts/<int:pk>/", api.AttemptDetail.as_view(), name="api-redteam-attempt"),
    path("attempts/<int:pk>/mark/", api.AttemptMark.as_view(), name="api-redteam-mark"),
    path("results/", api.Results.as_view(), name="api-redteam-results"),
]
