from django.urls import path

from . import api

urlpatterns = [
    path("runs/", api.RunListCreate.as_view(), name="api-training-runs"),
    path("runs/<int:pk>/", api.RunDetail.as_view(), name="api-training-run"),
    path("policy-runs/", api.PolicyRunCreate.as_view(), name="api-training-policy-runs"),
    path("runs/<int:pk>/cancel/", api.RunCancel.as_view(), name="api-training-run-cancel"),
    path("runs/<int:pk>/relaunch/", api.RunRelaunch.as_view(), name="api-training-run-relaunch"),
    path("checkpoints/", api.CheckpointList.as_view(), name="api-training-checkpoints"),
    path("checkpoints/<int:pk>/", api.CheckpointDetail.as_view(), name="api-training-checkpoint"),
    path("checkpoints/<int:pk>/serve/", api.CheckpointServe.as_view(), name="api-training-checkpoint-serve"),
    path("runs/<int:pk>/files/<str:name>", api.RunFile.as_view(), name="api-training-run-file"),
    path("leaderboard/", api.Leaderboard.as_view(), name="api-training-leaderboard"),
]
