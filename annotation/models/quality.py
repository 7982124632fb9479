"""Overlap review and gold items: the quality side of the judgements."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core.models import LeasedWork

from .dialogues import Focus, JudgementFields, Strength, Turn


class OverlapPolicy(models.Model):
    """Per focus: the share of judged turns re-judged by `reviewers` other annotators."""

    focus = models.CharField(max_length=20, choices=Focus.choices, unique=True)
    share = models.FloatField(help_text="0–1: the share of judged turns sampled for overlap review.")
    reviewers = models.PositiveSmallIntegerField(help_text="k: how many other annotators re-judge each one.")
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "overlap policies"
        constraints = [
            models.CheckConstraint(condition=Q(share__gte=0) & Q(share__lte=1), name="overlap_share_in_range"),
            models.CheckConstraint(condition=Q(reviewers__gte=1), name="overlap_at_least_one_reviewer"),
        ]

    def __str__(self):
        return f"{self.focus}: {self.share:.0%} × {self.reviewers}"


class GoldItem(models.Model):
    """A judged turn with the answer an admin expects; served blind among review work."""

    turn = models.OneToOneField(Turn, on_delete=models.CASCADE, related_name="gold")
    expected_generation = models.ForeignKey("modelserving.Generation", on_delete=models.PROTECT, related_name="+")
    expected_strength = models.CharField(max_length=24, choices=Strength.choices, blank=True,
                                         help_text="Empty: only the choice is checked.")
    note = models.TextField(blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return f"gold {self.turn}"


class ReviewTask(JudgementFields, LeasedWork):
    """One re-judgement of a turn by another annotator (overlap review) or one serve of a gold
    item; handed out through a leased queue (annotation/quality/review.py; status and lease columns from
    core.models.LeasedWork)."""

    class Kind(models.TextChoices):
        OVERLAP = "overlap"
        GOLD = "gold"

    turn = models.ForeignKey(Turn, on_delete=models.CASCADE, related_name="reviews")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    slot = models.PositiveSmallIntegerField(null=True, blank=True, help_text="1…k for overlap review.")
    assigned_to = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE,
                                    related_name="+", help_text="Gold serves are made for one annotator.")
    left_generation = models.ForeignKey("modelserving.Generation", on_delete=models.PROTECT, related_name="+",
                                        help_text="Shown as A in this task: drawn afresh, not the first judge's.")
    reviewer = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                 related_name="reviews_done")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["id"]
        indexes = [models.Index(fields=["status", "kind", "lease_expires_at"])]
        constraints = [
            models.UniqueConstraint(fields=["turn", "slot"], condition=Q(kind="overlap"), name="review_unique_slot"),
            models.UniqueConstraint(fields=["turn", "assigned_to"], condition=Q(kind="gold"),
                                    name="review_gold_once_per_annotator"),
            # Nobody judges the same item twice.
            models.UniqueConstraint(fields=["turn", "reviewer"], name="review_unique_reviewer"),
            models.CheckConstraint(condition=Q(status="open") | Q(reviewer__isnull=False, submitted_at__isnull=False),
                                   name="review_done_has_reviewer"),
        ]

    def __str__(self):
        return f"{self.kind} review {self.pk} of {self.turn}"
