from django.urls import path

from .batches import batch_api
from .demonstrations import api as demonstration_api
from .quality import review_api
from .workspace import api

urlpatterns = [
    path("dialogues/", api.DialogueListCreate.as_view(), name="api-dialogues"),
    path("dialogues/<int:pk>/", api.DialogueDetail.as_view(), name="api-dialogue-detail"),
    path("dialogues/<int:pk>/turns/", api.DialogueTurns.as_view(), name="api-dialogue-turns"),
    path("dialogues/<int:pk>/finish/", api.DialogueFinish.as_view(), name="api-dialogue-finish"),
    path("turns/next/", api.NextTurn.as_view(), name="api-turn-next"),
    path("turns/<int:pk>/", api.TurnDetail.as_view(), name="api-turn-detail"),
    path("turns/<int:pk>/judgement/", api.TurnJudgement.as_view(), name="api-turn-judgement"),
    path("turns/<int:pk>/retry/", api.TurnRetry.as_view(), name="api-turn-retry"),
    path("turns/<int:pk>/rewrite/", demonstration_api.TurnRewrite.as_view(), name="api-turn-rewrite"),
    path("demonstrations/", demonstration_api.DemonstrationListCreate.as_view(), name="api-demonstrations"),
    path("risk-categories/", api.RiskCategoryList.as_view(), name="api-risk-categories"),
    path("attack-vectors/", api.AttackVectorList.as_view(), name="api-attack-vectors"),
    path("reviews/claim/", review_api.ReviewClaim.as_view(), name="api-review-claim"),
    path("reviews/<int:pk>/", review_api.ReviewSubmit.as_view(), name="api-review-submit"),
    path("quality/", review_api.QualityReport.as_view(), name="api-quality"),
    path("quality/overlap/", review_api.OverlapPolicyView.as_view(), name="api-overlap-policy"),
    path("quality/gold/", review_api.GoldMark.as_view(), name="api-gold"),
    path("batches/", batch_api.BatchList.as_view(), name="api-batches"),
    path("sources/", batch_api.SourceList.as_view(), name="api-sources"),
    path("sources/import/", batch_api.SourceImport.as_view(), name="api-source-import"),
    path("batches/<str:label>/freeze/", batch_api.BatchFreeze.as_view(), name="api-batch-freeze"),
    path("batches/<str:label>/stats/", batch_api.BatchStats.as_view(), name="api-batch-stats"),
    path("batches/<str:label>/exports/", batch_api.BatchExports.as_view(), name="api-batch-exports"),
    path("batches/<str:label>/export/<str:fmt>/", batch_api.BatchExport.as_view(), name="api-batch-export"),
]
