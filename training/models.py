"""Training runs and the checkpoints they make."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from annotation.models import Focus


class Checkpoint(models.Model):
    """A model on disk that Tandem knows about: a base chat model, a reward model or a policy."""

    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", "Reward model"
        POLICY = "policy", "Policy"

    name = models.SlugField(max_length=120, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    focus = models.CharField(max_length=20, choices=Focus.choices, blank=True,
                             help_text="For a reward model: helpfulness or safety.")
    path = models.CharField(max_length=500, help_text="Folder holding config.json and *.safetensors.")
    run = models.OneToOneField("TrainingRun", null=True, blank=True, on_delete=models.PROTECT,
                               related_name="checkpoint", help_text="The run that made it; empty for a base model.")
    base = models.ForeignKey("self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived")
    evaluation = models.JSONField(default=dict, blank=True,
                                  help_text="eval.json: accuracy per strength and focus, score histograms.")
    lineage = models.JSONField(default=dict, blank=True,
                               help_text="Where it comes from: base, run, data batches and sources, reward models.")
    variant = models.OneToOneField("modelserving.PolicyVariant", null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="checkpoint", help_text="The policy variant serving it, if any.")
    files = models.JSONField(default=dict, blank=True, help_text="Weight files with their sizes, as verified.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind="policy") | ~Q(focus=""), name="checkpoint_rm_has_focus"),
        ]

    def __str__(self):
        return self.name


class TrainingRun(models.Model):
    class Kind(models.TextChoices):
        REWARD_MODEL = "reward_model", "Reward model"
        SFT = "sft", "Supervised fine-tuning"
        REJECTION_SAMPLING = "rejection_sampling", "Rejection sampling"
        PPO = "ppo", "PPO"
        GATT = "gatt", "Ghost Attention"
        POLICY_EVAL = "policy_eval", "Model-based evaluation"
        DPO = "dpo", "DPO"
        RLOO = "rloo", "Online RL (RLOO)"
        CONTEXT_DISTILLATION = "context_distillation", "Safety context distillation"

    POLICY_KINDS = (Kind.SFT, Kind.REJECTION_SAMPLING, Kind.PPO, Kind.GATT, Kind.DPO, Kind.RLOO,
                    Kind.CONTEXT_DISTILLATION)

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    kind = models.CharField(max_length=20, choices=Kind.choices)
    focus = models.CharField(max_length=20, choices=Focus.choices, blank=True)
    name = models.CharField(max_length=120, blank=True)
    config = models.JSONField(help_text="The job's validated configuration (its dataclass fields).")
    data = models.JSONField(default=dict, help_text="Batches, imported sources and the mix, as launched; "
                                                    "after the data files are written, the counts per part.")
    base = models.ForeignKey(Checkpoint, on_delete=models.PROTECT, related_name="runs")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    step = models.PositiveIntegerField(default=0)
    max_steps = models.PositiveIntegerField(default=0)
    summary = models.JSONField(default=dict, blank=True, help_text="The job's final figures.")
    log_tail = models.TextField(blank=True, help_text="The last lines the job printed (stdout and stderr).")
    error = models.TextField(blank=True)
    artifacts = models.JSONField(default=dict, blank=True, help_text="Paths of the data files and the output.")
    launched_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the job's process.")
    relaunch_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="relaunches",
                                    help_text="The failed or cancelled run this one repeats.")

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self):
        return f"run {self.pk} ({self.get_kind_display()}{', ' + self.focus if self.focus else ''})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def progress(self) -> float:
        if self.status == self.Status.SUCCEEDED:
            return 1.0
        return min(1.0, self.step / self.max_steps) if self.max_steps else 0.0


class RunMetric(models.Model):
    """One metrics line of a run (`{"event": "log", ...}`): the series the curves are drawn from."""

    run = models.ForeignKey(TrainingRun, on_delete=models.CASCADE, related_name="metrics")
    step = models.PositiveIntegerField()
    values = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["run_id", "id"]
