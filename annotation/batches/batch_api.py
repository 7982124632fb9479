"""Admins' data operations over HTTP: batches (list, freeze, export) and imports."""

import tempfile
from dataclasses import asdict
from pathlib import Path

from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import Count
from django.http import FileResponse
from django.urls import reverse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import AdminOnly
from core import fields as strict
from core.exceptions import Conflict
from core.pagination import list_schema, paginated

from ..models import Batch, ExportJob, Focus, PreferenceSource
from .export_jobs import export_download, export_request
from .exports import FORMATS
from .imports import READERS, preferences_import, refuse_oversized
from .selectors import batch_by_label
from .services import batch_freeze
from .stats import batch_statistics


class BatchSerializer(serializers.ModelSerializer):
    label = strict.CharField(source="__str__")
    frozen_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Batch
        fields = ["label", "iso_year", "iso_week", "sequence", "starts_on", "status", "frozen_at", "frozen_by",
                  "summary"]
        read_only_fields = fields


def _batch(label):
    batch = batch_by_label(label)
    if batch is None:
        raise NotFound
    return batch


class BatchList(APIView):
    permission_classes = [AdminOnly]

    @list_schema(BatchSerializer, operation_id="batches_list")
    def get(self, request):
        return paginated(request, self, Batch.objects.select_related("frozen_by"), BatchSerializer)


class FreezeSerializer(serializers.Serializer):
    force = strict.BooleanField(default=False, help_text="Freeze this week's batch early: judgements "
                                                              "submitted later this week go to a follow-on batch.")


class BatchFreeze(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(request=FreezeSerializer, responses=BatchSerializer)
    def post(self, request, label: str):
        incoming = FreezeSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        batch = batch_freeze(batch=_batch(label), admin=request.user, force=incoming.validated_data["force"])
        return Response(BatchSerializer(batch).data)


class ExportJobSerializer(serializers.ModelSerializer):
    percent = strict.IntegerField(read_only=True)
    download = serializers.SerializerMethodField()

    class Meta:
        model = ExportJob
        fields = ["format", "status", "rows_done", "rows_total", "percent", "rows", "sha256", "size", "error",
                  "requested_at", "started_at", "finished_at", "download"]
        read_only_fields = fields

    def get_download(self, job) -> str | None:
        if job.status != ExportJob.Status.DONE:
            return None
        return reverse("api-batch-export", args=[str(job.batch), job.format])


class ExportRequestSerializer(serializers.Serializer):
    format = serializers.ChoiceField(choices=list(FORMATS))


class BatchExports(APIView):
    """A frozen batch's export jobs (progress while they run), and a request for one more."""

    permission_classes = [AdminOnly]

    @extend_schema(responses=ExportJobSerializer(many=True))
    def get(self, request, label: str):
        jobs = ExportJob.objects.filter(batch=_batch(label)).select_related("batch")
        return Response(ExportJobSerializer(jobs, many=True).data)

    @extend_schema(request=ExportRequestSerializer, responses={202: ExportJobSerializer})
    def post(self, request, label: str):
        batch = _batch(label)
        incoming = ExportRequestSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        job = export_request(batch=batch, admin=request.user, fmt=incoming.validated_data["format"])
        return Response(ExportJobSerializer(job).data,
                        status=status.HTTP_200_OK if job.status == ExportJob.Status.DONE else status.HTTP_202_ACCEPTED)


class BatchExport(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(responses={(200, "application/octet-stream"): OpenApiTypes.BINARY, 409: OpenApiTypes.OBJECT},
                   description=f"Download a finished export of a frozen batch; formats: {', '.join(FORMATS)}. "
                               "Request it first (POST …/exports/); 409 until it is done.")
    def get(self, request, label: str, fmt: str):
        batch = _batch(label)
        if fmt not in FORMATS:
            raise NotFound
        try:
            path = export_download(batch=batch, admin=request.user, fmt=fmt)
        except Conflict as error:  # 409 with the job's progress
            job = ExportJob.objects.filter(batch=batch, format=fmt).select_related("batch").first()
            return Response({"detail": error.messages[0], "job": ExportJobSerializer(job).data if job else None},
                            status=status.HTTP_409_CONFLICT)
        return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)


class ImportSerializer(serializers.Serializer):
    file = serializers.FileField()
    format = serializers.ChoiceField(choices=list(READERS))
    source = serializers.SlugField(max_length=64)
    focus = serializers.ChoiceField(choices=Focus.choices, required=False, allow_blank=True, default="")


class SourceSerializer(serializers.ModelSerializer):
    comparisons = strict.IntegerField(source="comparison_count", read_only=True)

    class Meta:
        model = PreferenceSource
        fields = ["name", "kind", "focus", "description", "created_at", "comparisons"]
        read_only_fields = fields


class SourceList(APIView):
    permission_classes = [AdminOnly]

    @list_schema(SourceSerializer, operation_id="sources_list")
    def get(self, request):
        sources = PreferenceSource.objects.annotate(comparison_count=Count("comparisons")).order_by("name")
        return paginated(request, self, sources, SourceSerializer)


class SourceImport(APIView):
    permission_classes = [AdminOnly]
    parser_classes = [MultiPartParser]

    @extend_schema(request={"multipart/form-data": ImportSerializer},
                   responses={201: OpenApiTypes.OBJECT, 400: OpenApiTypes.OBJECT})
    def post(self, request):
        incoming = ImportSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        data = incoming.validated_data
        suffix = Path(data["file"].name).suffix.lower()
        if suffix not in (".jsonl", ".json", ".parquet"):
            raise ValidationError({"file": "Upload a .jsonl, .json or .parquet file."})
        try:
            refuse_oversized(data["file"].size)
        except DjangoValidationError as error:
            raise ValidationError({"detail": error.messages[0] + " Nothing was imported."}) from error
        with tempfile.NamedTemporaryFile(suffix=suffix) as copy:
            for chunk in data["file"].chunks():
                copy.write(chunk)
            copy.flush()
            try:
                report = preferences_import(path=Path(copy.name), kind=data["format"], source_name=data["source"],
                                            admin=request.user, focus=data["focus"])
            except DjangoValidationError as error:
                raise ValidationError({"detail": error.messages[0] + " Nothing was imported."}) from error
        return Response(asdict(report), status=status.HTTP_201_CREATED)


class BatchStats(APIView):
    permission_classes = [AdminOnly]

    @extend_schema(responses=OpenApiTypes.OBJECT, description="The batch page's figures as JSON.")
    def get(self, request, label: str):
        return Response(batch_statistics(_batch(label)))
