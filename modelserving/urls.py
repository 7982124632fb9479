from django.urls import path

from . import views

app_name = "modelserving"

urlpatterns = [
    path("variants/", views.variant_list, name="variants"),
]
