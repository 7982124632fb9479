"""Preference data imported from elsewhere (open-source sets), kept apart from Tandem's own."""

from django.conf import settings
from django.db import models

from .dialogues import Focus, Strength


class PreferenceSource(models.Model):
    """A tagged set of imported preference pairs (open-source data) that training can mix in."""

    class Kind(models.TextChoices):
        HH_RLHF = "hh-rlhf", "Anthropic HH-RLHF"
        SHP = "shp", "Stanford SHP"
        ULTRAFEEDBACK = "ultrafeedback", "UltraFeedback binarized"
        TRL = "trl", "TRL preference format"
        TANDEM = "tandem", "Tandem full export"

    name = models.SlugField(max_length=80, unique=True)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    focus = models.CharField(max_length=20, choices=Focus.choices, blank=True,
                             help_text="What the data is about, when it is one thing (e.g. HH harmless → safety).")
    description = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")

    def __str__(self):
        return self.name


class ImportedComparison(models.Model):
    source = models.ForeignKey(PreferenceSource, on_delete=models.CASCADE, related_name="comparisons")
    context = models.JSONField(help_text="OpenAI chat messages up to the compared responses.")
    chosen = models.TextField()
    rejected = models.TextField()
    strength = models.CharField(max_length=24, choices=Strength.choices, blank=True)
    margin = models.FloatField(null=True, blank=True)
    focus = models.CharField(max_length=20, choices=Focus.choices, blank=True)
    content_hash = models.CharField(max_length=32)
    line = models.PositiveIntegerField(help_text="Line (or row) of the imported file.")

    class Meta:
        ordering = ["source_id", "id"]
        constraints = [models.UniqueConstraint(fields=["source", "content_hash"], name="import_unique_content")]
