"""Researchers' training runs and checkpoints over HTTP: the same services as the dashboard."""

from django.core.exceptions import ValidationError as DjangoValidationError
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import HasRole
from accounts.roles import RESEARCHER
from annotation.refusals import refusal

from . import selectors, services
from .data import ROLES
from .jobs.losses import MARGIN_TABLES
from .models import Checkpoint, TrainingRun
from .policy import SETTINGS, policy_run_launch


class ResearcherOnly(HasRole):
    roles = (RESEARCHER,)


class MixSerializer(serializers.Serializer):
    primary_share = serializers.FloatField(required=False)
    other_focus = serializers.ChoiceField(choices=ROLES, required=False)
    sources = serializers.DictField(child=serializers.ChoiceField(choices=ROLES), required=False)


class LaunchSerializer(serializers.Serializer):
    focus = serializers.CharField()
    batches = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    sources = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    mix = MixSerializer(required=False)
    base = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all(), required=False,
                                        allow_null=True, help_text="A checkpoint name; default: the converted SmolLM2.")
    margin_table = serializers.ChoiceField(choices=list(MARGIN_TABLES), default="small")
    learning_rate = serializers.FloatField(default=1e-5)
    epochs = serializers.FloatField(default=1.0)
    max_length = serializers.IntegerField(default=1024)
    batch_size = serializers.IntegerField(default=512)
    per_device_batch_size = serializers.IntegerField(default=8)
    seed = serializers.IntegerField(default=0)
    name = serializers.CharField(required=False, default="", allow_blank=True, max_length=120)


class PolicyLaunchSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(SETTINGS))
    batches = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    base = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all(), required=False,
                                        allow_null=True)
    variant = serializers.CharField(required=False, allow_blank=True, default="")
    variants = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    helpfulness_rm = serializers.CharField(required=False, allow_blank=True, default="")
    safety_rm = serializers.CharField(required=False, allow_blank=True, default="")
    pool_runs = serializers.ListField(child=serializers.IntegerField(), required=False, default=list)
    instructions = serializers.ListField(child=serializers.CharField(), required=False, default=list)
    name = serializers.CharField(required=False, allow_blank=True, default="", max_length=120)
    settings = serializers.DictField(required=False, default=dict,
                                     help_text="Job settings to change (learning_rate, epochs, k, iterations, …).")


class CheckpointSerializer(serializers.ModelSerializer):
    class Meta:
        model = Checkpoint
        fields = ["id", "name", "kind", "focus", "path", "run", "base", "evaluation", "files", "created_at"]
        read_only_fields = fields


class RunSerializer(serializers.ModelSerializer):
    launched_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    base = serializers.SlugRelatedField(slug_field="name", read_only=True)
    checkpoint = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = ["id", "kind", "focus", "name", "status", "progress", "step", "max_steps", "config", "data", "base",
                  "summary", "error", "artifacts", "launched_by", "created_at", "started_at", "finished_at",
                  "heartbeat_at", "cancel_requested_at", "checkpoint"]
        read_only_fields = fields

    def get_checkpoint(self, run) -> str | None:
        checkpoint = getattr(run, "checkpoint", None) if run.status == TrainingRun.Status.SUCCEEDED else None
        return checkpoint.name if checkpoint else None


class RunDetailSerializer(RunSerializer):
    series = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "series", "log_tail"]
        read_only_fields = fields

    def get_series(self, run) -> dict:
        return selectors.run_series(run)



class RunListCreate(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses=RunSerializer(many=True))
    def get(self, request):
        return Response(RunSerializer(selectors.runs_recent(), many=True).data)

    @extend_schema(request=LaunchSerializer, responses={201: RunSerializer})
    def post(self, request):
        given = LaunchSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        try:
            run = services.run_launch(researcher=request.user, **given.validated_data)
        except DjangoValidationError as error:
            return refusal(error)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


class PolicyRunCreate(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(request=PolicyLaunchSerializer, responses={201: RunSerializer})
    def post(self, request):
        given = PolicyLaunchSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = dict(given.validated_data)
        data["job_settings"] = data.pop("settings")
        try:
            run = policy_run_launch(researcher=request.user, **data)
        except DjangoValidationError as error:
            return refusal(error)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


class RunDetail(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses=RunDetailSerializer)
    def get(self, request, pk: int):
        run = get_object_or_404(TrainingRun.objects.select_related("base", "launched_by"), pk=pk)
        return Response(RunDetailSerializer(run).data)


class RunCancel(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(request=None, responses=RunSerializer)
    def post(self, request, pk: int):
        run = get_object_or_404(TrainingRun, pk=pk)
        try:
            run = services.run_cancel(run=run, user=request.user)
        except DjangoValidationError as error:
            return Response({"detail": error.messages[0]}, status=status.HTTP_409_CONFLICT)
        return Response(RunSerializer(run).data)


class RunRelaunch(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(request=None, responses={201: RunSerializer})
    def post(self, request, pk: int):
        run = get_object_or_404(TrainingRun.objects.select_related("base"), pk=pk)
        try:
            relaunched = services.run_relaunch(run=run, researcher=request.user)
        except DjangoValidationError as error:
            return Response({"detail": error.messages[0]}, status=status.HTTP_409_CONFLICT)
        return Response(RunSerializer(relaunched).data, status=status.HTTP_201_CREATED)


class CheckpointList(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses=CheckpointSerializer(many=True))
    def get(self, request):
        return Response(CheckpointSerializer(Checkpoint.objects.all(), many=True).data)


class CheckpointDetail(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses=CheckpointSerializer)
    def get(self, request, pk: int):
        return Response(CheckpointSerializer(get_object_or_404(Checkpoint, pk=pk)).data)
