from django.urls import path

from . import api

urlpatterns = [
    path("variants/", api.VariantList.as_view(), name="api-variants"),
    path("variants/<int:pk>/", api.VariantDetail.as_view(), name="api-variant-detail"),
    path("pairs/", api.PairCreate.as_view(), name="api-pair-create"),
    path("pairs/<int:pk>/", api.PairDetail.as_view(), name="api-pair-detail"),
    path("generations/<int:pk>/", api.GenerationDetail.as_view(), name="api-generation-detail"),
]
