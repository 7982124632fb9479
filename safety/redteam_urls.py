"""Red-team pages, included into the "safety" namespace under /safety/red-team/ (hence no app_name)."""

from django.urls import path

from . import redteam_views as views

urlpatterns = [
    path("", views.home, name="redteam_home"),
    path("sessions/", views.session_start, name="redteam_start"),
    path("sessions/<int:pk>/", views.session_detail, name="redteam_session"),
    path("sessions/<int:pk>/clock/", views.session_clock, name="redteam_clock"),
    path("sessions/<int:pk>/attempts/", views.attempt_post, name="redteam_attempt_post"),
    path("sessions/<int:pk>/finish/", views.session_finish, name="redteam_finish"),
    path("attempts/<int:pk>/", views.attempt_fragment, name="redteam_attempt"),
    path("attempts/<int:pk>/mark/", views.attempt_mark, name="redteam_mark"),
    path("results/", views.results, name="redteam_results"),
]
