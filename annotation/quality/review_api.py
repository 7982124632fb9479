"""Overlap review over HTTP (annotators: claim, submit with the lease) and quality figures (admins)."""

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AdminOnly, AnnotatorOnly
from core import fields as strict
from core.leases import LeaseLost

from ..batches.selectors import batch_by_label
from ..models import Focus, ReviewTask, Turn
from ..workspace.judgements import MAX_REASON_CHARS, Judgement
from ..workspace.serializers import JudgementSerializer
from . import review
from .quality import quality_report


class ReviewTaskSerializer(serializers.Serializer):
    """What a reviewer sees: the context and the two responses in this task's sides, nothing of
    the first judgement, and the lease to submit with."""

    id = strict.IntegerField()
    focus = strict.CharField()
    context = serializers.ListField(child=serializers.DictField())
    response_a = strict.CharField()
    response_b = strict.CharField()
    lease_token = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()

    @staticmethod
    def of(task: ReviewTask) -> dict:
        a, b = review.review_sides(task)
        return {"id": task.pk, "focus": task.turn.dialogue.focus, "context": a.messages, "response_a": a.text,
                "response_b": b.text, "lease_token": task.lease_token, "lease_expires_at": task.lease_expires_at}


class ReviewSubmitSerializer(JudgementSerializer):
    lease_token = serializers.UUIDField()



class ReviewClaim(APIView):
    permission_classes = [AnnotatorOnly]

    @extend_schema(request=None, responses={200: ReviewTaskSerializer, 204: OpenApiResponse(description="No work.")},
                   description="Your live lease, or a lease on the next review task.")
    def post(self, request):
        task = review.review_claim(reviewer=request.user)
        if task is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(ReviewTaskSerializer(ReviewTaskSerializer.of(task)).data)


class ReviewSubmit(APIView):
    permission_classes = [AnnotatorOnly]

    @extend_schema(request=ReviewSubmitSerializer,
                   responses={200: OpenApiResponse(description="Stored."),
                              409: OpenApiResponse(description="No live lease: nothing stored.")})
    def post(self, request, pk: int):
        task = ReviewTask.objects.filter(pk=pk, leased_by=request.user).first()
        if task is None:  # never leased to this annotator (or since taken over): the same 409
            raise LeaseLost("You hold no lease on this review task; nothing was stored.")
        incoming = ReviewSubmitSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = dict(incoming.validated_data)
        token = data.pop("lease_token")
        done = review.review_submit(task=task, reviewer=request.user, lease_token=token,
                                    judgement=Judgement(**data))
        return Response({"id": done.pk, "status": done.status})


class OverlapPolicySerializer(serializers.Serializer):
    focus = serializers.ChoiceField(choices=Focus.choices)
    share = strict.FloatField(min_value=0, max_value=1)
    reviewers = strict.IntegerField(min_value=1, max_value=review.MAX_OVERLAP_REVIEWERS)


class OverlapPolicyView(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(request=OverlapPolicySerializer, responses=OverlapPolicySerializer)
    def put(self, request):
        incoming = OverlapPolicySerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        policy = review.overlap_policy_set(admin=request.user, **incoming.validated_data)
        return Response(OverlapPolicySerializer(policy).data)


class GoldSerializer(serializers.Serializer):
    turn = strict.IntegerField()
    expected_generation = strict.IntegerField()
    expected_strength = strict.CharField(required=False, allow_blank=True, default="", max_length=40)
    note = strict.CharField(required=False, allow_blank=True, default="", max_length=MAX_REASON_CHARS)


class GoldMark(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(request=GoldSerializer, responses={201: GoldSerializer})
    def post(self, request):
        incoming = GoldSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        turn = Turn.objects.filter(pk=data["turn"], submitted_at__isnull=False).first()
        if turn is None:
            raise NotFound("No judged turn with that id.")
        review.gold_mark(admin=request.user, turn=turn, choice_generation_id=data["expected_generation"],
                         strength=data["expected_strength"], note=data["note"])
        return Response(data, status=status.HTTP_201_CREATED)


class QualityReport(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(responses=OpenApiResponse(description="Agreement per group and per-annotator figures."))
    def get(self, request):
        label = request.query_params.get("batch")
        batch = batch_by_label(label) if label else None
        if label and batch is None:
            raise NotFound(f"No batch {label}.")
        focus = request.query_params.get("focus") or None
        return Response(quality_report(batch=batch, focus=focus, resamples=500))

