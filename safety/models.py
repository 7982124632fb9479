"""Safety evaluation (adversarial prompts × policy variants, each response rated by three raters
on the 5-point Likert scale) and red-team sessions (timed attacks on one variant)."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import LeasedWork


class SafetyEvaluation(models.Model):
    name = models.CharField(max_length=120, unique=True)
    variants = models.ManyToManyField("modelserving.PolicyVariant", related_name="safety_evaluations")
    raters_per_response = models.PositiveSmallIntegerField(default=3)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class EvalPrompt(models.Model):
    evaluation = models.ForeignKey(SafetyEvaluation, on_delete=models.CASCADE, related_name="prompts")
    index = models.PositiveIntegerField()
    text = models.TextField()
    risk_category = models.ForeignKey("annotation.RiskCategory", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="+")
    attack_vector = models.ForeignKey("annotation.AttackVector", null=True, blank=True, on_delete=models.PROTECT,
                                      related_name="+")

    class Meta:
        ordering = ["evaluation_id", "index"]
        constraints = [models.UniqueConstraint(fields=["evaluation", "index"], name="evalprompt_unique_index")]

    def __str__(self):
        return f"prompt {self.index} of {self.evaluation}"


class EvalResponse(models.Model):
    prompt = models.ForeignKey(EvalPrompt, on_delete=models.CASCADE, related_name="responses")
    variant = models.ForeignKey("modelserving.PolicyVariant", on_delete=models.PROTECT, related_name="+")
    generation = models.OneToOneField("modelserving.Generation", on_delete=models.PROTECT, related_name="+")

    class Meta:
        ordering = ["prompt_id", "variant_id"]
        constraints = [models.UniqueConstraint(fields=["prompt", "variant"], name="evalresponse_unique_variant")]


class SafetyRating(LeasedWork):
    """One rater's slot on one response: leased like review work (core.models.LeasedWork), then a
    1–5 rating (5 safest and most helpful; 1 or 2 a violation)."""

    response = models.ForeignKey(EvalResponse, on_delete=models.CASCADE, related_name="ratings")
    slot = models.PositiveSmallIntegerField()
    rater = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                              related_name="safety_ratings")
    rating = models.PositiveSmallIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["response", "slot"], name="rating_unique_slot"),
            models.UniqueConstraint(fields=["response", "rater"], name="rating_one_per_rater"),
            models.CheckConstraint(condition=Q(rating__isnull=True) | Q(rating__gte=1, rating__lte=5),
                                   name="rating_likert_1_5"),
            models.CheckConstraint(condition=Q(status="open") | Q(rating__isnull=False, rater__isnull=False),
                                   name="rating_done_has_value"),
        ]


class RedTeamSession(models.Model):
    """A timed session in which one annotator attacks one variant."""

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="red_team_sessions")
    variant = models.ForeignKey("modelserving.PolicyVariant", on_delete=models.PROTECT, related_name="+")
    alias = models.CharField(max_length=20, blank=True,
                             help_text="What the red teamer calls the variant (\"Model 2\"): never its name.")
    minutes = models.PositiveSmallIntegerField(help_text="Planned length.")
    started_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]

    def __str__(self):
        return f"red-team session {self.pk} on {self.variant}"


class RedTeamAttempt(models.Model):
    """One adversarial prompt of a session, the variant's response and whether it violates."""

    session = models.ForeignKey(RedTeamSession, on_delete=models.CASCADE, related_name="attempts")
    prompt = models.TextField()
    risk_category = models.ForeignKey("annotation.RiskCategory", on_delete=models.PROTECT, related_name="+")
    attack_vector = models.ForeignKey("annotation.AttackVector", on_delete=models.PROTECT, related_name="+")
    generation = models.OneToOneField("modelserving.Generation", on_delete=models.PROTECT, related_name="+")
    violating = models.BooleanField(null=True, blank=True, help_text="Marked by the red teamer once answered.")
    note = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    marked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["session_id", "id"]
