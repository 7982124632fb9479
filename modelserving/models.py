"""Policy variants (what can be sampled) and generations (what was sampled, exactly how)."""

import uuid
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import F, Q

from .endpoints import check_endpoint, validate_api_key_env


def validate_endpoint_url(value: str) -> None:
    """An http(s) URL with a host. Unlike URLField's validator, single-label hosts such as a
    compose service name (http://vllm-chat:8000/v1) are endpoints too."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 — raises ValueError for a malformed port
    except ValueError:
        raise ValidationError("Enter an http(s) URL such as http://vllm-chat:8000/v1.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in value):
        raise ValidationError("Enter an http(s) URL such as http://vllm-chat:8000/v1.")


ANNOTATOR_ERROR = "The model could not answer."
# Advice beside the generic error where a pair failed (the workspace and its API).
PAIR_ADVICE = "Retry, or mark the pair unusable."


class PolicyVariant(models.Model):
    """One servable model plus its sampling settings, behind an OpenAI-compatible endpoint.

    The endpoint URL lives here and only here: nothing a client sends can point sampling
    anywhere else.
    """

    name = models.SlugField(max_length=64, unique=True)
    base_url = models.CharField(
        max_length=300,
        validators=[validate_endpoint_url],
        help_text="OpenAI-compatible base URL, ending in /v1 (e.g. http://vllm-chat:8000/v1).",
    )
    model_name = models.CharField(
        max_length=300, help_text="The served model name (vLLM's --served-model-name)."
    )
    api_key_env = models.CharField(
        max_length=100,
        blank=True,
        validators=[validate_api_key_env],
        help_text="Name of the environment variable (TANDEM_VARIANT_KEY_…) that holds this endpoint's API key.",
    )
    awaiting_approval = models.BooleanField(
        default=False,
        help_text="Filed by a researcher with an endpoint URL: nothing samples it until an admin approves.")
    temperature_min = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    temperature_max = models.FloatField(validators=[MinValueValidator(0.0), MaxValueValidator(2.0)])
    top_p = models.FloatField(default=0.9, validators=[MinValueValidator(0.01), MaxValueValidator(1.0)])
    max_new_tokens = models.PositiveIntegerField(default=512, validators=[MinValueValidator(1)])
    is_active = models.BooleanField(default=True)
    sampling_weight = models.FloatField(
        default=1.0,
        validators=[MinValueValidator(0.0)],
        help_text="Relative chance of being picked for a pair among the active variants.",
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(temperature_min__gte=0) & Q(temperature_min__lte=F("temperature_max")),
                name="variant_temperature_range_ordered",
            ),
            models.CheckConstraint(condition=Q(temperature_max__lte=2.0), name="variant_temperature_max_le_2"),
            models.CheckConstraint(condition=Q(top_p__gt=0) & Q(top_p__lte=1), name="variant_top_p_in_0_1"),
            models.CheckConstraint(condition=Q(max_new_tokens__gte=1), name="variant_max_new_tokens_positive"),
            models.CheckConstraint(condition=Q(sampling_weight__gte=0), name="variant_weight_non_negative"),
        ]

    def __str__(self):
        return self.name

    def clean(self):
        if self.base_url:
            try:
                check_endpoint(self.base_url)
            except ValidationError as error:
                raise ValidationError({"base_url": error.messages}) from None
        if (
            self.temperature_min is not None
            and self.temperature_max is not None
            and self.temperature_min > self.temperature_max
        ):
            raise ValidationError({"temperature_max": "Must be at least the minimum temperature."})


class Pair(models.Model):
    """Two generations for the same dialogue context, sampled to be compared."""

    class Strategy(models.TextChoices):
        TWO_VARIANTS = "two_variants", "two variants"
        ONE_VARIANT_TWO_TEMPERATURES = "one_variant_two_temperatures", "one variant, two temperatures"

    messages = models.JSONField(help_text="The dialogue context, as OpenAI chat messages.")
    strategy = models.CharField(max_length=40, choices=Strategy.choices)
    pairing = models.JSONField(
        default=dict, help_text="How the two configurations were chosen: candidates, weights, draws."
    )
    requested_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"pair {self.pk}"


class Generation(models.Model):
    """One response, with the exact request that produced it."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    FINISHED = (Status.DONE, Status.FAILED)

    pair = models.ForeignKey(Pair, null=True, blank=True, on_delete=models.CASCADE, related_name="generations")
    position = models.PositiveSmallIntegerField(
        default=0, help_text="1 or 2 within its pair (the order drawn, not the side shown)."
    )
    variant = models.ForeignKey(PolicyVariant, on_delete=models.PROTECT, related_name="generations")
    requested_by = models.ForeignKey(
        "auth.User", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Whose request it answers (their pairs in flight are capped); none for staff jobs.")

    # The request, as sent.
    model_name = models.CharField(max_length=300)
    messages = models.JSONField()
    temperature = models.FloatField()
    top_p = models.FloatField()
    seed = models.BigIntegerField()
    max_tokens = models.PositiveIntegerField()
    request_body = models.JSONField(default=dict, help_text="The JSON body sent to the endpoint.")

    # The outcome.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED, db_index=True)
    text = models.TextField(blank=True, help_text="The response; partial while running.")
    finish_reason = models.CharField(max_length=40, blank=True)
    prompt_tokens = models.PositiveIntegerField(null=True, blank=True)
    completion_tokens = models.PositiveIntegerField(null=True, blank=True)
    first_token_ms = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True, help_text="Request start to last byte.")
    attempts = models.PositiveSmallIntegerField(default=0)
    recoveries = models.PositiveSmallIntegerField(
        default=0, help_text="Times the recovery sweep sent it again (its task was lost or its worker stopped).")
    lapses = models.PositiveSmallIntegerField(
        default=0, help_text="Times its worker stopped mid-try (its lease lapsed) and the sweep sent it again; "
                             "RECOVERY_MAX_REQUEUES of these and it ends failed.")
    error = models.TextField(blank=True, help_text="Why the last try failed, in words a person can read.")

    # The claim of the worker running it (see services.sampling).
    lease_token = models.UUIDField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the last worker to run it.")

    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True, help_text="When the last try started.")
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["pair_id", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["pair", "position"], condition=Q(pair__isnull=False), name="generation_unique_position"
            ),
            models.CheckConstraint(
                condition=~Q(status="done") | Q(finished_at__isnull=False), name="generation_done_has_finished_at"
            ),
        ]

    def __str__(self):
        return f"generation {self.pk} ({self.variant_id}, {self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in self.FINISHED

    @property
    def reference(self) -> str:
        """What an annotator quotes about a failed response; staff find it in the admin (search G-<id>)."""
        return f"G-{self.pk}"

    def annotator_error(self, advice: str = "") -> str:
        """The failure as annotators see it: generic, with a reference. The detailed reason in
        ``error`` names the endpoint and quotes the server: it is for staff, the admin and logs."""
        if self.status != self.Status.FAILED:
            return ""
        return " ".join(part for part in (ANNOTATOR_ERROR, advice, f"(reference {self.reference})") if part)

    @property
    def annotator_error_for_pair(self) -> str:
        return self.annotator_error(PAIR_ADVICE)

    @staticmethod
    def new_lease_token():
        return uuid.uuid4()


class LocalServer(models.Model):
    """A model server process Tandem started for a variant on this machine (vLLM's CPU build or
    `transformers serve`: modelserving/engines.py; the embedded set-up; in production each variant
    is a vLLM server that operators run)."""

    variant = models.OneToOneField(PolicyVariant, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="local_server")
    model_dir = models.CharField(max_length=500)
    port = models.PositiveIntegerField()
    pid = models.PositiveIntegerField()
    log_path = models.CharField(max_length=500)
    started_at = models.DateTimeField(auto_now_add=True)
    stopped_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"model server {self.model_dir} on :{self.port}"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"


class VariantOutage(models.Model):
    """A time a variant was out of pairing: its endpoint did not answer a probe, or most of its
    recent generations failed (modelserving/availability.py). While ``ended_at`` is empty no new
    pair uses it; the check probes it again at ``next_probe_at`` (half-open, with a back-off that
    doubles each failed probe) and ends the outage once it answers. Staff read ``reason``; it names
    the endpoint and may quote the server, so annotators never see it."""

    class Cause(models.TextChoices):
        PROBE = "probe", "its endpoint did not answer a probe"
        FAILURES = "failures", "most of its recent generations failed"

    variant = models.ForeignKey(PolicyVariant, on_delete=models.CASCADE, related_name="outages")
    cause = models.CharField(max_length=20, choices=Cause.choices)
    reason = models.TextField()
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    probes = models.PositiveIntegerField(default=0, help_text="Failed probes since it started.")
    next_probe_at = models.DateTimeField()
    last_probe_error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            # One open outage per variant: two checks racing cannot open it twice.
            models.UniqueConstraint(fields=["variant"], condition=Q(ended_at__isnull=True),
                                    name="variant_outage_one_open"),
        ]

    def __str__(self):
        return f"{self.variant} out of pairing since {self.started_at:%Y-%m-%d %H:%M:%S}"
