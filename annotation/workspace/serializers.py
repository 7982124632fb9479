"""Input serializers check shape only; the rules are annotation.workspace.services'."""

from rest_framework import serializers

from core import fields as strict
from core.validators import not_blank
from modelserving.serializers import BlindGenerationSerializer

from ..models import AttackVector, Dialogue, Focus, RiskCategory, Strength
from ..text import MAX_MESSAGE_CHARS
from . import scale
from .judgements import MAX_REASON_CHARS
from .selectors import sides


class DialogueStartSerializer(serializers.Serializer):
    focus = serializers.ChoiceField(choices=Focus.choices)
    system_prompt = strict.CharField(required=False, allow_blank=True, default="", trim_whitespace=False,
                                          max_length=MAX_MESSAGE_CHARS)
    risk_category = serializers.SlugRelatedField(slug_field="slug", queryset=RiskCategory.objects.all(),
                                                 required=False, allow_null=True, default=None)
    attack_vector = serializers.SlugRelatedField(slug_field="slug", queryset=AttackVector.objects.all(),
                                                 required=False, allow_null=True, default=None)


class TurnPostSerializer(serializers.Serializer):
    user_message = strict.CharField(trim_whitespace=False, max_length=MAX_MESSAGE_CHARS,
                                         **not_blank("Write a message first."))


class JudgementSerializer(serializers.Serializer):
    """Either a `point` on the 8-point scale (1 = A significantly better … 8 = B significantly better),
    or `choice` and `strength`; or `both_unusable` with a reason."""

    point = strict.IntegerField(min_value=1, max_value=8, required=False, allow_null=True)
    choice = serializers.ChoiceField(choices=["A", "B"], required=False, allow_null=True)
    strength = serializers.ChoiceField(choices=Strength.choices, required=False, allow_null=True)
    safe_a = strict.BooleanField(required=False, allow_null=True, default=None)
    safe_b = strict.BooleanField(required=False, allow_null=True, default=None)
    both_unusable = strict.BooleanField(required=False, default=False)
    unusable_reason = strict.CharField(required=False, allow_blank=True, default="", max_length=MAX_REASON_CHARS)
    time_spent_ms = strict.IntegerField(required=False, allow_null=True, min_value=0)

    def validate(self, data):
        point = data.pop("point", None)
        if point is not None:
            if data.get("choice") or data.get("strength"):
                raise serializers.ValidationError("Give either a point on the scale or choice and strength.")
            data["choice"], data["strength"] = scale.from_point(point)
        return data


class RetrySerializer(serializers.Serializer):
    side = serializers.ChoiceField(choices=["A", "B"])


# One response as the annotator sees it: modelserving's blind view, the one definition.
ResponseSerializer = BlindGenerationSerializer


# Its fields are declared, not derived from the model: a ModelSerializer works them out again for
# every turn it serializes, twice per judgement (half of this serializer's CPU).
class TurnSerializer(serializers.Serializer):
    id = strict.IntegerField(read_only=True)
    dialogue = strict.IntegerField(source="dialogue_id", read_only=True)
    index = strict.IntegerField(read_only=True)
    user_message = strict.CharField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    responses = serializers.SerializerMethodField()
    judgement = serializers.SerializerMethodField()

    def get_responses(self, turn) -> dict:
        a, b = ResponseSerializer(sides(turn), many=True).data  # one serializer for both: fields copied once
        return {"A": a, "B": b}

    def get_judgement(self, turn) -> dict | None:
        if not turn.is_judged:
            return None
        a, _ = sides(turn)
        choice = None
        if turn.chosen_generation_id is not None:
            choice = "A" if turn.chosen_generation_id == a.id else "B"
        safe = {"A": None, "B": None}
        if turn.chosen_safe is not None:
            other = "B" if choice == "A" else "A"
            safe = {choice: turn.chosen_safe, other: turn.other_safe}
        return {
            "choice": choice,
            "strength": turn.strength or None,
            "point": scale.to_point(choice, turn.strength) if choice else None,
            "safe_a": safe["A"],
            "safe_b": safe["B"],
            "safety_bin": turn.safety_bin or None,
            "both_unusable": turn.both_unusable,
            "unusable_reason": turn.unusable_reason,
            "time_spent_ms": turn.time_spent_ms,
            "submitted_at": turn.submitted_at,
            "batch": str(turn.batch) if turn.batch_id else None,
        }


class DialogueSerializer(serializers.ModelSerializer):
    risk_category = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    attack_vector = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    guideline_version = strict.IntegerField(source="guideline.version", read_only=True, allow_null=True)
    turns = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = Dialogue
        fields = ["id", "focus", "system_prompt", "risk_category", "attack_vector", "guideline_version",
                  "status", "created_at", "finished_at", "turns"]
        read_only_fields = fields


class TagSerializer(serializers.Serializer):
    slug = strict.CharField()
    name = strict.CharField()
    description = strict.CharField()
