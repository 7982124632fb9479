from django.urls import include, path

from . import eval_views

app_name = "safety"
urlpatterns = [
    path("evaluations/", eval_views.evaluations, name="evaluations"),
    path("evaluations/<int:pk>/", eval_views.evaluation_detail, name="evaluation"),
    path("evaluations/<int:pk>/results.json", eval_views.evaluation_json, name="evaluation_json"),
    path("rate/", eval_views.rate_page, name="rate"),
    path("rate/claim/", eval_views.rate_claim, name="rate_claim"),
    path("rate/<int:pk>/", eval_views.rate_submit, name="rate_submit"),
    path("red-team/", include("safety.redteam_urls")),
]
