"""Safety evaluations over HTTP: create and read (admins, researchers), claim and rate (annotators)."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AnnotatorOnly, StaffRole
from core import fields as strict
from core.leases import LeaseLost
from core.pagination import list_schema, paginated
from modelserving.models import PolicyVariant

from . import evaluation as service
from .models import SafetyEvaluation, SafetyRating


class PromptSerializer(serializers.Serializer):
    prompt = strict.CharField(trim_whitespace=False, max_length=20_000)
    risk_category = strict.CharField(required=False, allow_blank=True, default="", max_length=50)
    attack_vector = strict.CharField(required=False, allow_blank=True, default="", max_length=50)


class EvaluationCreateSerializer(serializers.Serializer):
    name = strict.CharField(max_length=120)
    variants = serializers.SlugRelatedField(slug_field="name", queryset=PolicyVariant.objects.all(), many=True)
    prompts = PromptSerializer(many=True)
    raters = strict.IntegerField(default=3)


class EvaluationSerializer(serializers.ModelSerializer):
    variants = serializers.SlugRelatedField(slug_field="name", many=True, read_only=True)

    class Meta:
        model = SafetyEvaluation
        fields = ["id", "name", "variants", "raters_per_response", "created_at"]
        read_only_fields = fields



class EvaluationListCreate(APIView):
    permission_classes = [StaffRole]

    @list_schema(EvaluationSerializer, operation_id="safety_evaluations_list")
    def get(self, request):
        return paginated(request, self, SafetyEvaluation.objects.prefetch_related("variants").order_by("-pk"),
                         EvaluationSerializer)

    @extend_schema(request=EvaluationCreateSerializer, responses={201: EvaluationSerializer})
    def post(self, request):
        incoming = EvaluationCreateSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        prompts = [{"text": p["prompt"], "risk_category": p["risk_category"], "attack_vector": p["attack_vector"],
                    "line": index + 1} for index, p in enumerate(data["prompts"])]
        evaluation = service.evaluation_create(user=request.user, name=data["name"], variants=data["variants"],
                                               prompts=prompts, raters=data["raters"])
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED)


class EvaluationResults(APIView):
    permission_classes = [StaffRole]

    @extend_schema(responses=OpenApiResponse(description="Per variant: violation %, mean rating, intervals, "
                                                         "AC1/AC2, by risk category."))
    def get(self, request, pk: int):
        return Response(service.evaluation_results(get_object_or_404(SafetyEvaluation, pk=pk),
                                                   vendor=request.query_params.get("vendor") or None))


class RatingTaskSerializer(serializers.Serializer):
    id = strict.IntegerField()
    prompt = strict.CharField()
    response = strict.CharField()
    lease_token = serializers.UUIDField()
    lease_expires_at = serializers.DateTimeField()


class RatingClaim(APIView):
    permission_classes = [AnnotatorOnly]

    @extend_schema(request=None, responses={200: RatingTaskSerializer, 204: OpenApiResponse(description="Nothing.")})
    def post(self, request):
        slot = service.rating_claim(rater=request.user)
        if slot is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(RatingTaskSerializer({
            "id": slot.pk, "prompt": slot.response.prompt.text, "response": slot.response.generation.text,
            "lease_token": slot.lease_token, "lease_expires_at": slot.lease_expires_at}).data)


class RatingSubmitSerializer(serializers.Serializer):
    rating = strict.IntegerField()
    lease_token = serializers.UUIDField()


class RatingSubmit(APIView):
    permission_classes = [AnnotatorOnly]

    @extend_schema(request=RatingSubmitSerializer, responses={200: OpenApiResponse(description="Stored."),
                                                             409: OpenApiResponse(description="No live lease.")})
    def post(self, request, pk: int):
        slot = SafetyRating.objects.filter(pk=pk, leased_by=request.user).first()
        if slot is None:
            raise LeaseLost("You hold no lease on this rating; nothing was stored.")
        incoming = RatingSubmitSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        done = service.rating_submit(slot=slot, rater=request.user, **incoming.validated_data)
        return Response({"id": done.pk, "rating": done.rating})
