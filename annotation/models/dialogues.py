"""Dialogues, turns and judgements, the weekly batches they go into, and demonstrations: the
preference data itself."""

from django.conf import settings
from django.db import models
from django.db.models import Q

from core import preference_scale as scale

from . import frozen


class Focus(models.TextChoices):
    HELPFULNESS = "helpfulness", "Helpfulness"
    SAFETY = "safety", "Safety"


class Strength(models.TextChoices):
    """How much better the chosen response is (Llama 2's four levels)."""

    SIGNIFICANTLY_BETTER = scale.SIGNIFICANTLY_BETTER, scale.STRENGTH_LABELS[scale.SIGNIFICANTLY_BETTER]
    BETTER = scale.BETTER, scale.STRENGTH_LABELS[scale.BETTER]
    SLIGHTLY_BETTER = scale.SLIGHTLY_BETTER, scale.STRENGTH_LABELS[scale.SLIGHTLY_BETTER]
    NEGLIGIBLY_BETTER = scale.NEGLIGIBLY_BETTER, scale.STRENGTH_LABELS[scale.NEGLIGIBLY_BETTER]


class SafetyBin(models.TextChoices):
    CHOSEN_SAFE_OTHER_UNSAFE = "chosen_safe_other_unsafe", "chosen safe, other unsafe"
    BOTH_SAFE = "both_safe", "both safe"
    BOTH_UNSAFE = "both_unsafe", "both unsafe"


class TaggedList(models.Model):
    """An admin-managed list entry (risk categories, attack vectors)."""

    slug = models.SlugField(max_length=60, unique=True)
    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    is_active = models.BooleanField(default=True)
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        abstract = True
        ordering = ["position", "name"]

    def __str__(self):
        return self.name


class RiskCategory(TaggedList):
    class Meta(TaggedList.Meta):
        verbose_name_plural = "risk categories"


class AttackVector(TaggedList):
    pass


class Guideline(models.Model):
    focus = models.CharField(max_length=20, choices=Focus.choices)
    version = models.PositiveIntegerField()
    title = models.CharField(max_length=200)
    text = models.TextField(help_text="Markdown.")
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["focus", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["focus", "version"], name="guideline_unique_version"),
            models.UniqueConstraint(fields=["focus"], condition=Q(is_active=True),
                                    name="guideline_one_active_per_focus"),
        ]

    def __str__(self):
        return f"{self.get_focus_display()} guideline v{self.version}"


class AnswerTemplate(models.Model):
    """How a safe answer to a prompt of one risk category goes (Llama 2's answer templates for safety
    context distillation): admins write them, versioned like guidelines, one active per category. A
    distillation run records the versions it used."""

    risk_category = models.ForeignKey(RiskCategory, on_delete=models.PROTECT, related_name="answer_templates")
    version = models.PositiveIntegerField()
    text = models.TextField(help_text="Put after the safety preprompt, e.g. \"Acknowledge the concern, decline the "
                                      "harmful part, point to safe resources.\"")
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["risk_category", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["risk_category", "version"], name="answer_template_unique_version"),
            models.UniqueConstraint(fields=["risk_category"], condition=Q(is_active=True),
                                    name="answer_template_one_active_per_category"),
        ]

    def __str__(self):
        return f"{self.risk_category} answer template v{self.version}"


class Batch(models.Model):
    """The judgements of one ISO week (in settings.TIME_ZONE). Frozen by an admin, then immutable.

    A week normally has one batch (sequence 0). When an admin freezes the current week early, the
    judgements submitted later that week go to a follow-on batch (sequence 1, 2 …, labelled
    ``2026-W49.1``) instead of being turned away.
    """

    class Status(models.TextChoices):
        OPEN = "open"
        FROZEN = "frozen"

    iso_year = models.PositiveSmallIntegerField()
    iso_week = models.PositiveSmallIntegerField()
    sequence = models.PositiveSmallIntegerField(default=0, help_text="0: the week's batch; 1, 2 …: follow-ons "
                                                                     "after an early freeze.")
    starts_on = models.DateField()
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    frozen_at = models.DateTimeField(null=True, blank=True)
    frozen_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT,
                                  related_name="+")
    summary = models.JSONField(default=dict, blank=True,
                               help_text="At freeze: counts, policy variants, guideline versions, split sizes.")
    snapshot = models.JSONField(default=dict, blank=True,
                                help_text="At freeze: each policy variant's name and settings, by id (the "
                                          "exports read these, not the variants' current rows).")

    class Meta:
        ordering = ["-iso_year", "-iso_week", "-sequence"]
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(fields=["iso_year", "iso_week", "sequence"], name="batch_unique_week_sequence"),
            models.CheckConstraint(condition=Q(status="open") | Q(frozen_at__isnull=False),
                                   name="batch_frozen_has_time"),
        ]
        triggers = [frozen.BATCH]

    def __str__(self):
        label = f"{self.iso_year}-W{self.iso_week:02d}"
        return f"{label}.{self.sequence}" if self.sequence else label

    @property
    def is_frozen(self) -> bool:
        return self.status == self.Status.FROZEN


class Dialogue(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        FINISHED = "finished"
        ABANDONED = "abandoned"

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="dialogues")
    focus = models.CharField(max_length=20, choices=Focus.choices)
    system_prompt = models.TextField(blank=True)
    guideline = models.ForeignKey(Guideline, null=True, blank=True, on_delete=models.PROTECT, related_name="+",
                                  help_text="The guideline active when the dialogue started.")
    risk_category = models.ForeignKey(RiskCategory, null=True, blank=True, on_delete=models.PROTECT)
    attack_vector = models.ForeignKey(AttackVector, null=True, blank=True, on_delete=models.PROTECT)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(focus="safety") | (Q(risk_category__isnull=True) & Q(attack_vector__isnull=True)),
                name="dialogue_red_team_tags_only_in_safety",
            )
        ]

    def __str__(self):
        return f"dialogue {self.pk} ({self.focus})"

    @property
    def is_adversarial(self) -> bool:
        return self.risk_category_id is not None


class JudgementFields(models.Model):
    """One judgement of a pair: a turn's own, or an overlap review's (empty until submitted)."""

    chosen_generation = models.ForeignKey("modelserving.Generation", null=True, blank=True,
                                          on_delete=models.PROTECT, related_name="+")
    strength = models.CharField(max_length=24, choices=Strength.choices, blank=True)
    chosen_safe = models.BooleanField(null=True, blank=True)
    other_safe = models.BooleanField(null=True, blank=True)
    safety_bin = models.CharField(max_length=30, choices=SafetyBin.choices, blank=True)
    both_unusable = models.BooleanField(default=False)
    unusable_reason = models.TextField(blank=True)
    time_spent_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        abstract = True


class Turn(JudgementFields):
    """One user message, the pair sampled for it, and the annotator's judgement of the pair."""

    dialogue = models.ForeignKey(Dialogue, on_delete=models.CASCADE, related_name="turns")
    index = models.PositiveSmallIntegerField()
    user_message = models.TextField()
    pair = models.OneToOneField("modelserving.Pair", on_delete=models.PROTECT, related_name="turn")
    left_generation = models.ForeignKey("modelserving.Generation", on_delete=models.PROTECT, related_name="+",
                                        help_text="Shown as response A (left); the other is B.")
    created_at = models.DateTimeField(auto_now_add=True)

    # The judgement's fields come from JudgementFields.
    submitted_at = models.DateTimeField(null=True, blank=True, db_index=True)
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.PROTECT, related_name="turns")
    split = models.CharField(max_length=5, blank=True, choices=[("train", "train"), ("test", "test")],
                             help_text="Set when the batch is frozen: the reward model's held-out test split.")
    snapshot = models.JSONField(null=True, blank=True,
                                help_text="At freeze: what the exports would otherwise join from rows that can "
                                          "still change (focus, annotator, vendor, guideline version, risk "
                                          "category and attack vector slugs).")

    class Meta:
        ordering = ["dialogue_id", "index"]
        constraints = [
            models.UniqueConstraint(fields=["dialogue", "index"], name="turn_unique_index"),
            models.CheckConstraint(
                condition=Q(submitted_at__isnull=True) | Q(batch__isnull=False), name="turn_judged_has_batch"
            ),
            models.CheckConstraint(
                condition=Q(submitted_at__isnull=True) | Q(both_unusable=True)
                | (Q(chosen_generation__isnull=False) & ~Q(strength="")),
                name="turn_judged_has_choice_and_strength",
            ),
            models.CheckConstraint(
                condition=~(Q(chosen_safe=False) & Q(other_safe=True)), name="turn_not_chosen_unsafe_other_safe"
            ),
        ]
        indexes = [
            # The turns that wait for a judgement, few at any time while judged turns pile up: the
            # next-turn query probes this per active dialogue, whatever the statistics say.
            models.Index(fields=["dialogue", "created_at"], condition=Q(submitted_at__isnull=True),
                         name="turn_pending"),
        ]
        triggers = [frozen.TURN]

    def __str__(self):
        return f"turn {self.index} of dialogue {self.dialogue_id}"

    @property
    def is_judged(self) -> bool:
        return self.submitted_at is not None


class Demonstration(models.Model):
    """An ideal answer written by an annotator (Llama 2's SFT annotation): either a prompt with its
    answer, or a rewrite of the response chosen in a judged turn. Exported as SFT data."""

    class Kind(models.TextChoices):
        WRITTEN = "written", "prompt and ideal answer"
        REWRITE = "rewrite", "rewrite of a chosen response"

    annotator = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="demonstrations")
    kind = models.CharField(max_length=10, choices=Kind.choices)
    context = models.JSONField(help_text="The chat messages before the answer, ending with the user's.")
    answer = models.TextField()
    turn = models.OneToOneField(Turn, null=True, blank=True, on_delete=models.PROTECT, related_name="rewrite")
    original = models.TextField(blank=True, help_text="For a rewrite: the chosen response it replaces.")
    batch = models.ForeignKey(Batch, on_delete=models.PROTECT, related_name="demonstrations")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(kind="written") | Q(turn__isnull=False),
                                   name="demonstration_rewrite_has_turn"),
        ]
        triggers = [frozen.DEMONSTRATION]

    def __str__(self):
        return f"{self.get_kind_display()} {self.pk}"

    @property
    def messages(self) -> list[dict]:
        return [*self.context, {"role": "assistant", "content": self.answer}]
