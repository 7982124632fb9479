from django.urls import path

from .batches import views as batch_views
from .demonstrations import views as demonstration_views
from .quality import review_views
from .workspace import views

app_name = "annotation"

urlpatterns = [
    path("", views.workspace, name="workspace"),
    path("dialogues/", views.dialogue_start, name="dialogue_start"),
    path("dialogues/<int:pk>/", views.dialogue_detail, name="dialogue"),
    path("dialogues/<int:pk>/turns/", views.turn_post, name="turn_post"),
    path("dialogues/<int:pk>/finish/", views.dialogue_finish, name="dialogue_finish"),
    path("turns/<int:pk>/", views.turn_fragment, name="turn"),
    path("turns/<int:pk>/judgement/", views.judgement_submit, name="judgement"),
    path("turns/<int:pk>/retry/", views.generation_retry, name="retry"),
    path("history/", views.history, name="history"),
    path("demonstrations/", demonstration_views.demonstrations, name="demonstrations"),
    path("turns/<int:pk>/rewrite/", demonstration_views.rewrite, name="rewrite"),
    path("guidelines/<str:focus>/", views.guideline, name="guideline"),
    path("review/", review_views.review_page, name="review"),
    path("review/claim/", review_views.review_claim, name="review_claim"),
    path("review/<int:pk>/", review_views.review_submit, name="review_submit"),
    path("quality/", review_views.quality_page, name="quality"),
    path("quality.json", review_views.quality_json, name="quality_json"),
    path("quality/gold/", review_views.gold_mark, name="gold_mark"),
    path("batches/", batch_views.batch_list, name="batches"),
    path("batches/<str:label>/freeze/", batch_views.batch_freeze_view, name="batch_freeze"),
    path("batches/<str:label>/stats/", batch_views.batch_stats, name="batch_stats"),
    path("batches/<str:label>/exports/", batch_views.batch_exports, name="batch_exports"),
    path("batches/<str:label>/exports/request/", batch_views.batch_export_request, name="batch_export_request"),
    path("batches/<str:label>/export/<str:fmt>/", batch_views.batch_download, name="batch_download"),
]
