from django.urls import path

from . import api

urlpatterns = [
    path("invitations/", api.InvitationCreate.as_view(), name="api-invitations"),
    path("invitations/accept/", api.InvitationAccept.as_view(), name="api-invitation-accept"),
    path("audit/", api.AuditList.as_view(), name="api-audit"),
]
