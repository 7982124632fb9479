"""Researchers' training runs and checkpoints over HTTP: the same services as the dashboard."""

import stat
from pathlib import Path

from django.http import FileResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import ResearcherOnly, StaffRole
from annotation.models import Focus
from core import fields as strict
from core.pagination import list_schema, paginated
from modelserving.serializers import VariantSerializer

from . import selectors, services
from .data import ROLES
from .job_settings import POLICY_KINDS, JobSetting, settings_for
from .launch import run_launch, run_relaunch
from .models import Checkpoint, TrainingRun


def setting_serializer_field(item: JobSetting) -> serializers.Field:
    """The API field of a job setting, from the job's config: its bounds or choices, help and default."""
    common = {"required": False, "help_text": f"{item.help} Default: {item.default}."}
    if item.type is bool:
        return strict.BooleanField(**common)
    if item.choices:
        return serializers.ChoiceField(choices=list(item.choices), **common)
    if item.type is str:
        return strict.CharField(max_length=200, allow_blank=True, **common)
    field = strict.IntegerField if item.type is int else strict.FloatField
    return field(min_value=item.low, max_value=item.high, **common)


# A reward-model run's settings, as its job's config declares them (training/jobs/reward.py).
RewardSettingsSerializer = type("RewardSettingsSerializer", (serializers.Serializer,), {
    name: setting_serializer_field(item) for name, item in settings_for(TrainingRun.Kind.REWARD_MODEL).items()})


class MixSerializer(serializers.Serializer):
    primary_share = strict.FloatField(required=False)
    other_focus = serializers.ChoiceField(choices=ROLES, required=False)
    sources = serializers.DictField(child=serializers.ChoiceField(choices=ROLES), required=False)


class LaunchSerializer(serializers.Serializer):
    focus = strict.CharField(max_length=20)
    batches = serializers.ListField(child=strict.CharField(), required=False, default=list)
    sources = serializers.ListField(child=strict.CharField(), required=False, default=list)
    mix = MixSerializer(required=False)
    base = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all(), required=False,
                                        allow_null=True, help_text="A checkpoint name; default: the converted SmolLM2.")
    settings = RewardSettingsSerializer(required=False, default=dict,
                                        help_text="The job's settings; each left out keeps its default.")
    name = strict.CharField(required=False, default="", allow_blank=True, max_length=120)


class PolicyLaunchSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=list(POLICY_KINDS))
    batches = serializers.ListField(child=strict.CharField(), required=False, default=list)
    base = serializers.SlugRelatedField(slug_field="name", queryset=Checkpoint.objects.all(), required=False,
                                        allow_null=True)
    variant = strict.CharField(required=False, allow_blank=True, default="", max_length=64)
    variants = serializers.ListField(child=strict.CharField(), required=False, default=list)
    helpfulness_rm = strict.CharField(required=False, allow_blank=True, default="", max_length=200)
    safety_rm = strict.CharField(required=False, allow_blank=True, default="", max_length=200)
    pool_runs = serializers.ListField(child=strict.IntegerField(), required=False, default=list)
    instructions = serializers.ListField(child=strict.CharField(), required=False, default=list)
    prompts = serializers.ListField(
        child=strict.CharField(max_length=4000, allow_blank=True), required=False, default=list, max_length=5000,
        help_text="An evaluation's own held-out prompts (one user message each) instead of the batches' "
                  "held-out split.")
    focus = serializers.ChoiceField(choices=Focus.choices, required=False, allow_blank=True, default="",
                                    help_text="DPO: the pairs it learns from (helpfulness or safety).")
    sources = serializers.ListField(child=strict.CharField(max_length=200), required=False, default=list,
                                    help_text="DPO: imported preference sources mixed in.")
    reference = strict.CharField(required=False, allow_blank=True, default="", max_length=200,
                                 help_text="DPO: the frozen reference checkpoint; default: the base.")
    name = strict.CharField(required=False, allow_blank=True, default="", max_length=120)
    settings = serializers.DictField(required=False, default=dict,
                                     help_text="The job's settings to change (learning_rate, epochs, k, iterations, "
                                               "max_new_tokens, …: each kind's own, with the bounds of its job); "
                                               "each left out keeps its default.")


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
    reward_curves = serializers.SerializerMethodField(
        help_text="Rejection sampling: per temperature, the mean max and median reward among the first N samples "
                  "of a prompt, for N = 1 … K (Llama 2's Figures 7 and 8).")

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "series", "reward_curves", "log_tail"]
        read_only_fields = fields

    def get_series(self, run) -> dict:
        return selectors.run_series(run)

    def get_reward_curves(self, run) -> dict:
        return selectors.reward_curves(run)



class RunListCreate(APIView):
    permission_classes = [ResearcherOnly]

    @list_schema(RunSerializer, operation_id="training_runs_list")
    def get(self, request):
        return paginated(request, self, selectors.runs_recent(limit=None), RunSerializer)

    @extend_schema(request=LaunchSerializer, responses={201: RunSerializer})
    def post(self, request):
        given = LaunchSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        run = run_launch(researcher=request.user, kind=TrainingRun.Kind.REWARD_MODEL, **given.validated_data)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


class PolicyRunCreate(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(request=PolicyLaunchSerializer, responses={201: RunSerializer})
    def post(self, request):
        given = PolicyLaunchSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        run = run_launch(researcher=request.user, **given.validated_data)
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)


class RunDetail(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses=RunDetailSerializer)
    def get(self, request, pk: int):
        run = get_object_or_404(TrainingRun.objects.select_related("base", "launched_by"), pk=pk)
        return Response(RunDetailSerializer(run).data)


class RunCancel(APIView):
    """The run's own researcher, or an admin (anyone else: 403)."""

    permission_classes = [StaffRole]

    @extend_schema(request=None, responses=RunSerializer,
                   description="Cancel a queued or running run: its own researcher (who launched it, or "
                               "launched it again), or an admin. Written to the audit trail.")
    def post(self, request, pk: int):
        run = get_object_or_404(TrainingRun, pk=pk)
        run = services.run_cancel(run=run, user=request.user)
        return Response(RunSerializer(run).data)


class RunRelaunch(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(request=None, responses={201: RunSerializer})
    def post(self, request, pk: int):
        run = get_object_or_404(TrainingRun.objects.select_related("base"), pk=pk)
        relaunched = run_relaunch(run=run, researcher=request.user)
        return Response(RunSerializer(relaunched).data, status=status.HTTP_201_CREATED)


class CheckpointList(APIView):
    permission_classes = [ResearcherOnly]

    @list_schema(CheckpointSerializer, operation_id="training_checkpoints_list")
    def get(self, request):
        return paginated(request, self, Checkpoint.objects.order_by("-pk"), CheckpointSerializer)


class CheckpointDetail(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses=CheckpointSerializer)
    def get(self, request, pk: int):
        return Response(CheckpointSerializer(get_object_or_404(Checkpoint, pk=pk)).data)


class ServeSerializer(serializers.Serializer):
    name = serializers.SlugField(max_length=64)
    temperature_min = strict.FloatField(default=services.serve_defaults()["temperature_min"])
    temperature_max = strict.FloatField(default=services.serve_defaults()["temperature_max"])
    max_new_tokens = strict.IntegerField(default=services.serve_defaults()["max_new_tokens"])
    sampling_weight = strict.FloatField(default=services.serve_defaults()["sampling_weight"])
    base_url = strict.CharField(required=False, allow_blank=True, default="", max_length=500)
    model_name = strict.CharField(required=False, allow_blank=True, default="", max_length=200)


class CheckpointServe(APIView):
    """Put a policy checkpoint in front of annotators as a new variant (the checkpoint page's action)."""

    permission_classes = [ResearcherOnly]

    @extend_schema(request=ServeSerializer, responses={201: VariantSerializer})
    def post(self, request, pk: int):
        given = ServeSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        checkpoint = get_object_or_404(Checkpoint, pk=pk)
        variant = services.checkpoint_serve(checkpoint=checkpoint, researcher=request.user, **given.validated_data)
        return Response(VariantSerializer(variant).data, status=status.HTTP_201_CREATED)


# The files of a finished run a researcher may read: what the jobs write besides the weights.
RUN_FILES = ("samples.jsonl", "kept.jsonl", "gain.json", "eval.json", "distillation.json", "metrics.jsonl",
             "tandem_job.json")


class RunFile(APIView):
    permission_classes = [ResearcherOnly]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
                   description=f"One file a run wrote: {', '.join(RUN_FILES)}.")
    def get(self, request, pk: int, name: str):
        run = get_object_or_404(TrainingRun, pk=pk)
        path = run_file(run, name)
        if path is None:
            raise NotFound(f"Run {pk} has no file {name!r}.")
        return FileResponse(open(path, "rb"), as_attachment=True, filename=f"run-{pk}-{name}")


def run_file(run: TrainingRun, name: str) -> Path | None:
    """The file ``name`` of the run's folder, if it is one of RUN_FILES and a regular file whose
    resolved path (symbolic links followed) is inside the run's folder; else None. A link that a job
    (or anyone with the folder) left there never serves a file from elsewhere."""
    folder = (run.artifacts or {}).get("out")
    if name not in RUN_FILES or not folder:
        return None
    try:
        root = Path(folder).resolve(strict=True)
        path = (root / name).resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a loop of links
        return None
    if not path.is_relative_to(root) or not stat.S_ISREG(path.stat().st_mode):
        return None
    return path


class Leaderboard(APIView):
    """The human-vote leaderboard (as /training/leaderboard/): Bradley–Terry over the judgements, and
    the style-controlled fit beside it (style_score, style_ci95, style_rank; the style coefficients)."""

    permission_classes = [ResearcherOnly]

    @extend_schema(parameters=[OpenApiParameter("batch", str, description="A batch label; default: all.")],
                   responses=OpenApiTypes.OBJECT)
    def get(self, request):
        from annotation.batches.selectors import batch_by_label

        from .leaderboard import leaderboard_read

        batch = None
        if request.query_params.get("batch"):
            batch = batch_by_label(request.query_params["batch"])
            if batch is None:
                raise NotFound("No such batch.")
        return Response(leaderboard_read(batch=batch))
