"""Demonstrations over HTTP: the annotator's own, written or rewritten."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response

from core import fields as strict
from core.pagination import list_schema, paginated
from core.validators import not_blank

from ..models import Demonstration
from ..text import MAX_ANSWER_CHARS, MAX_MESSAGE_CHARS
from ..workspace.api import AnnotationAPIView
from ..workspace.selectors import own_turn
from . import services


class DemonstrationSerializer(serializers.ModelSerializer):
    batch = strict.CharField(source="batch.__str__", read_only=True)

    class Meta:
        model = Demonstration
        fields = ["id", "kind", "context", "answer", "turn", "original", "batch", "created_at"]
        read_only_fields = fields


class DemonstrationWriteSerializer(serializers.Serializer):
    prompt = strict.CharField(trim_whitespace=False, max_length=MAX_MESSAGE_CHARS,
                                   **not_blank("Write the prompt first."))
    answer = strict.CharField(trim_whitespace=False, max_length=MAX_ANSWER_CHARS,
                                   **not_blank("Write the ideal answer."))
    system_prompt = strict.CharField(required=False, allow_blank=True, default="", max_length=MAX_MESSAGE_CHARS)


class RewriteSerializer(serializers.Serializer):
    answer = strict.CharField(trim_whitespace=False, max_length=MAX_ANSWER_CHARS,
                                   **not_blank("Write the ideal answer."))


class DemonstrationListCreate(AnnotationAPIView):
    @list_schema(DemonstrationSerializer, operation_id="demonstrations_list")
    def get(self, request):
        own = Demonstration.objects.filter(annotator=request.user).select_related("batch").order_by("-pk")
        return paginated(request, self, own, DemonstrationSerializer)

    @extend_schema(request=DemonstrationWriteSerializer, responses={201: DemonstrationSerializer})
    def post(self, request):
        incoming = DemonstrationWriteSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        demonstration = services.demonstration_write(annotator=request.user, **incoming.validated_data)
        return Response(DemonstrationSerializer(demonstration).data, status=status.HTTP_201_CREATED)


class TurnRewrite(AnnotationAPIView):
    @extend_schema(request=RewriteSerializer, responses={201: DemonstrationSerializer})
    def post(self, request, pk: int):
        turn = own_turn(annotator=request.user, pk=pk)
        incoming = RewriteSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        demonstration = services.demonstration_rewrite(annotator=request.user, turn=turn,
                                                       answer=incoming.validated_data["answer"])
        return Response(DemonstrationSerializer(demonstration).data, status=status.HTTP_201_CREATED)
