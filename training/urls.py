from django.urls import path

from . import views

app_name = "training"
urlpatterns = [
    path("", views.dashboard, name="dashboard"),
    path("runs/", views.runs, name="runs"),
    path("policy/", views.policy_launch, name="policy_launch"),
    path("runs/<int:pk>/", views.run_detail, name="run"),
    path("runs/<int:pk>/cancel/", views.run_cancel, name="run_cancel"),
    path("runs/<int:pk>/relaunch/", views.run_relaunch, name="run_relaunch"),
    path("checkpoints/<int:pk>/", views.checkpoint_detail, name="checkpoint"),
    path("checkpoints/compare/", views.checkpoint_compare, name="compare"),
    path("leaderboard/", views.leaderboard_page, name="leaderboard"),
]
