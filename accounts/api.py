"""Invitations over HTTP: an admin invites, the invitee accepts with a username and a password.
The same services as the /manage/ page and the invitation link."""

from django.urls import reverse
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from core import fields as strict
from core.pagination import list_schema, paginated

from . import services
from .models import AuditEntry
from .permissions import AdminOnly
from .roles import ROLES, primary_role


class InvitationCreateSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=list(ROLES))
    email = serializers.EmailField(required=False, allow_blank=True, default="")


class InvitationSerializer(serializers.Serializer):
    role = strict.CharField()
    email = strict.CharField()
    expires_at = serializers.DateTimeField()
    token = strict.CharField(help_text="Shown once: it is not stored.")
    url = strict.CharField()


class InvitationAcceptSerializer(serializers.Serializer):
    token = strict.CharField(max_length=128)
    username = strict.CharField(max_length=150)
    password = strict.CharField(max_length=128, style={"input_type": "password"})


class AcceptedSerializer(serializers.Serializer):
    username = strict.CharField()
    role = strict.CharField()


class InvitationCreate(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSerializer})
    def post(self, request):
        given = InvitationCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        invitation, token = services.invitation_create(created_by=request.user, **given.validated_data)
        url = request.build_absolute_uri(reverse("accounts:invitation_accept", args=[token]))
        return Response(InvitationSerializer({"role": invitation.role, "email": invitation.email,
                                              "expires_at": invitation.expires_at, "token": token, "url": url}).data,
                        status=status.HTTP_201_CREATED)


class InvitationAccept(APIView):
    permission_classes = [AllowAny]
    authentication_classes = []

    @extend_schema(request=InvitationAcceptSerializer, responses={201: AcceptedSerializer})
    def post(self, request):
        given = InvitationAcceptSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        user = services.invitation_accept(**given.validated_data)
        return Response(AcceptedSerializer({"username": user.get_username(), "role": primary_role(user) or ""}).data,
                        status=status.HTTP_201_CREATED)


class AuditEntrySerializer(serializers.ModelSerializer):
    class Meta:
        model = AuditEntry
        fields = ["id", "at", "actor_name", "action", "object_type", "object_id", "summary", "detail"]
        read_only_fields = fields


class AuditList(APIView):
    """The audit trail, newest first: who launched, cancelled, relaunched or served what, and when."""

    permission_classes = [AdminOnly]

    @list_schema(AuditEntrySerializer, operation_id="audit_list", parameters=[
        OpenApiParameter("action", str, description="Only this action, e.g. training.cancel.")])
    def get(self, request):
        entries = AuditEntry.objects.order_by("-at", "-pk")
        if action := request.query_params.get("action"):
            entries = entries.filter(action=action)
        return paginated(request, self, entries, AuditEntrySerializer)
