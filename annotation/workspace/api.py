"""The annotator's operations for programmatic clients. Same services as the workspace.

Every queryset is the requesting user's own: another annotator's ids answer 404 with an empty
body, whatever the caller's role.
"""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AnyRole
from core.pagination import list_schema, paginated
from core.schema import SAMPLING_UNAVAILABLE

from ..models import AttackVector, Dialogue, RiskCategory
from . import judgements, services
from .selectors import next_turn, own_dialogue, own_turn, own_turn_bare
from .serializers import (
    DialogueSerializer,
    DialogueStartSerializer,
    JudgementSerializer,
    RetrySerializer,
    TagSerializer,
    TurnPostSerializer,
    TurnSerializer,
)


class AnnotationAPIView(APIView):
    """Refusals of the services go through core.api.exception_handler (400, 403, 404, 409, 503)."""

    permission_classes = [AnyRole]


class DialogueListCreate(AnnotationAPIView):
    @list_schema(DialogueSerializer, operation_id="dialogues_list")
    def get(self, request):
        dialogues = Dialogue.objects.filter(annotator=request.user).select_related(
            "risk_category", "attack_vector", "guideline").prefetch_related("turns").order_by("-created_at", "-pk")
        return paginated(request, self, dialogues, DialogueSerializer)

    @extend_schema(request=DialogueStartSerializer,
                   responses={201: DialogueSerializer, 503: SAMPLING_UNAVAILABLE})
    def post(self, request):
        incoming = DialogueStartSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        dialogue = services.dialogue_start(annotator=request.user, **incoming.validated_data)
        return Response(DialogueSerializer(dialogue).data, status=status.HTTP_201_CREATED)


class DialogueDetail(AnnotationAPIView):
    @extend_schema(responses=DialogueSerializer)
    def get(self, request, pk: int):
        return Response(DialogueSerializer(own_dialogue(annotator=request.user, pk=pk)).data)


class DialogueTurns(AnnotationAPIView):
    @extend_schema(request=TurnPostSerializer, responses={201: TurnSerializer, 503: SAMPLING_UNAVAILABLE},
                   description="Post the next user message; a pair is sampled for it.")
    def post(self, request, pk: int):
        dialogue = own_dialogue(annotator=request.user, pk=pk)
        incoming = TurnPostSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        turn = services.turn_post(dialogue=dialogue, annotator=request.user,
                                  user_message=incoming.validated_data["user_message"])
        turn = own_turn(annotator=request.user, pk=turn.pk)
        return Response(TurnSerializer(turn).data, status=status.HTTP_201_CREATED)


class DialogueFinish(AnnotationAPIView):
    @extend_schema(request=None, responses=DialogueSerializer)
    def post(self, request, pk: int):
        dialogue = own_dialogue(annotator=request.user, pk=pk)
        dialogue = services.dialogue_finish(dialogue=dialogue, annotator=request.user)
        return Response(DialogueSerializer(dialogue).data)


class TurnDetail(AnnotationAPIView):
    @extend_schema(responses=TurnSerializer)
    def get(self, request, pk: int):
        return Response(TurnSerializer(own_turn(annotator=request.user, pk=pk)).data)


class NextTurn(AnnotationAPIView):
    @extend_schema(responses={200: TurnSerializer, 204: OpenApiResponse(description="Nothing waits for you.")})
    def get(self, request):
        turn = next_turn(annotator=request.user)
        if turn is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(TurnSerializer(turn).data)


class TurnJudgement(AnnotationAPIView):
    @extend_schema(request=JudgementSerializer,
                   responses={201: TurnSerializer, 200: TurnSerializer,
                              409: OpenApiResponse(description="Already judged differently.")},
                   description="201 when stored; 200 when the same judgement was already stored (a retry).")
    def post(self, request, pk: int):
        turn = own_turn_bare(annotator=request.user, pk=pk)
        incoming = JudgementSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        turn, created = judgements.judgement_submit(turn=turn, annotator=request.user,
                                                  judgement=judgements.Judgement(**incoming.validated_data))
        return Response(TurnSerializer(turn).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class TurnRetry(AnnotationAPIView):
    @extend_schema(request=RetrySerializer, responses={202: TurnSerializer})
    def post(self, request, pk: int):
        turn = own_turn(annotator=request.user, pk=pk)
        incoming = RetrySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        services.generation_retry(turn=turn, annotator=request.user, side=incoming.validated_data["side"])
        return Response(TurnSerializer(own_turn(annotator=request.user, pk=pk)).data, status=status.HTTP_202_ACCEPTED)


class RiskCategoryList(AnnotationAPIView):
    @list_schema(TagSerializer, name="PaginatedRiskCategoryList", operation_id="risk_categories_list")
    def get(self, request):
        return paginated(request, self, RiskCategory.objects.filter(is_active=True).order_by("position", "pk"),
                         TagSerializer)


class AttackVectorList(AnnotationAPIView):
    @list_schema(TagSerializer, name="PaginatedAttackVectorList", operation_id="attack_vectors_list")
    def get(self, request):
        return paginated(request, self, AttackVector.objects.filter(is_active=True).order_by("position", "pk"),
                         TagSerializer)
