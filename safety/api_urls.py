from django.urls import include, path

from . import eval_api

urlpatterns = [
    path("evaluations/", eval_api.EvaluationListCreate.as_view(), name="api-safety-evaluations"),
    path("evaluations/<int:pk>/results/", eval_api.EvaluationResults.as_view(), name="api-safety-evaluation-results"),
    path("ratings/claim/", eval_api.RatingClaim.as_view(), name="api-safety-rating-claim"),
    path("ratings/<int:pk>/", eval_api.RatingSubmit.as_view(), name="api-safety-rating-submit"),
    path("red-team/", include("safety.redteam_api_urls")),
]
