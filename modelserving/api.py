from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import models
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import generics, serializers, status
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AnyRole, StaffRole
from accounts.roles import ADMIN, RESEARCHER, has_role
from core import fields as strict
from core.schema import SAMPLING_UNAVAILABLE

from . import services
from .models import Generation, Pair, PolicyVariant
from .serializers import (
    BlindGenerationSerializer,
    GenerationSerializer,
    PairRequestSerializer,
    PairSerializer,
    VariantSerializer,
)


def _sees_variants(user) -> bool:
    return has_role(user, ADMIN, RESEARCHER)


def _pairs():
    return Pair.objects.prefetch_related("generations__variant")


class VariantList(generics.ListAPIView):
    permission_classes = [StaffRole]
    serializer_class = VariantSerializer
    queryset = PolicyVariant.objects.all()


class VariantSettingsSerializer(serializers.ModelSerializer):
    """What an admin may change over the API: the sampling settings and whether the variant is
    drawn. Endpoints (URL, served model, key) change in the admin or with `manage.py variant`.
    The bounds are the model's validators (so the schema shows them); that temperature_min is at
    most temperature_max, also against the stored values, is the service's check."""

    serializer_field_mapping = {**serializers.ModelSerializer.serializer_field_mapping,
                                models.FloatField: strict.FloatField,
                                models.PositiveIntegerField: strict.IntegerField,
                                models.BooleanField: strict.BooleanField}

    class Meta:
        model = PolicyVariant
        fields = ["temperature_min", "temperature_max", "top_p", "max_new_tokens", "sampling_weight", "is_active"]
        extra_kwargs = {name: {"required": False} for name in fields}


class VariantDetail(APIView):
    permission_classes = [StaffRole]

    @extend_schema(responses=VariantSerializer)
    def get(self, request, pk: int):
        return Response(VariantSerializer(get_object_or_404(PolicyVariant, pk=pk)).data)

    @extend_schema(request=VariantSettingsSerializer, responses=VariantSerializer)
    def patch(self, request, pk: int):
        if not has_role(request.user, ADMIN):
            raise PermissionDenied("Only admins change a policy variant.")
        variant = get_object_or_404(PolicyVariant, pk=pk)
        given = VariantSettingsSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        unknown = set(request.data) - set(VariantSettingsSerializer().fields)
        if unknown:
            raise ValidationError({field: "Not changeable here (use the admin or `manage.py variant`)."
                                   for field in sorted(unknown)})
        variant = services.variant_update(variant=variant, **given.validated_data)
        return Response(VariantSerializer(variant).data)


class PairCreate(APIView):
    """Staff only: annotators get their pairs through their dialogues (annotation's API)."""

    permission_classes = [StaffRole]

    @extend_schema(request=PairRequestSerializer, responses={201: PairSerializer, 503: SAMPLING_UNAVAILABLE})
    def post(self, request):
        incoming = PairRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        try:
            pair = services.pair_request(messages=incoming.validated_data["messages"], requested_by=request.user)
        except services.NoActiveVariant:
            raise  # 503 (core.api)
        except DjangoValidationError as error:
            raise ValidationError({"messages": error.messages}) from error
        return Response(PairSerializer(_pairs().get(pk=pair.pk)).data, status=status.HTTP_201_CREATED)


class PairDetail(APIView):
    permission_classes = [StaffRole]

    @extend_schema(responses=PairSerializer)
    def get(self, request, pk: int):
        return Response(PairSerializer(get_object_or_404(_pairs(), pk=pk)).data)


class GenerationDetail(APIView):
    permission_classes = [AnyRole]

    @extend_schema(responses=BlindGenerationSerializer,
                   description="Annotators get the blind view of their own responses; staff get these fields "
                               "and the sampling record (variant, model_name, temperature, top_p, seed, …).")
    def get(self, request, pk: int):
        generations = Generation.objects.select_related("variant")
        if not _sees_variants(request.user):
            generations = generations.filter(pair__requested_by=request.user)
        generation = get_object_or_404(generations, pk=pk)
        serializer = GenerationSerializer if _sees_variants(request.user) else BlindGenerationSerializer
        return Response(serializer(generation).data)
