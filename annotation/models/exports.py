"""What a frozen batch keeps and how it is exported: frozen generations and export jobs."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from modelserving.models import Generation, Pair

from . import frozen
from .dialogues import Batch


class FrozenGeneration(Generation):
    """The generations of a frozen batch's pairs are frozen too: the rule belongs to batches, so its
    trigger is declared here, on a proxy of modelserving's table."""

    class Meta:
        proxy = True
        triggers = [frozen.GENERATION]


class FrozenPair(Pair):
    """A frozen batch's pairs (the context its generations answer) are frozen too, as its generations."""

    class Meta:
        proxy = True
        triggers = [frozen.PAIR]


class ExportJob(models.Model):
    """One export of a frozen batch in one format, run by a Celery task. One row (and one lock) per
    batch and format: a second request joins the job that runs, a finished file is served again."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="export_jobs")
    format = models.CharField(max_length=10)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(null=True, blank=True, help_text="Records to write, once counted.")
    rows_done = models.PositiveIntegerField(default=0, help_text="Records read so far (the progress bar).")
    rows = models.PositiveIntegerField(null=True, blank=True, help_text="Rows in the finished file.")
    file_name = models.CharField(max_length=200, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    recoveries = models.PositiveSmallIntegerField(default=0, help_text="Times the recovery sweep sent it again.")
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True)
    requested_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                     related_name="+")
    requested_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["batch_id", "format"]
        constraints = [
            models.UniqueConstraint(fields=["batch", "format"], name="export_one_job_per_batch_and_format"),
            models.CheckConstraint(condition=~Q(status="done") | (~Q(sha256="") & Q(finished_at__isnull=False)),
                                   name="export_done_has_file"),
        ]

    def __str__(self):
        return f"{self.format} export of batch {self.batch_id} ({self.status})"

    @property
    def is_active(self) -> bool:
        return self.status in (self.Status.QUEUED, self.Status.RUNNING)

    @property
    def percent(self) -> int:
        if self.status == self.Status.DONE:
            return 100
        return int(100 * self.rows_done / self.rows_total) if self.rows_total else 0
