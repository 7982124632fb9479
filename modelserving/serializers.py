from rest_framework import serializers

from core import fields as strict

from .models import Generation, Pair, PolicyVariant
from .services import MAX_CONTEXT_CHARS


class MessageSerializer(serializers.Serializer):
    role = serializers.ChoiceField(choices=["system", "user", "assistant"])
    content = strict.CharField(trim_whitespace=False, max_length=MAX_CONTEXT_CHARS)


class PairRequestSerializer(serializers.Serializer):
    """Only the dialogue context: which endpoint samples it is the registry's decision alone."""

    messages = MessageSerializer(many=True, allow_empty=False, max_length=200)


class VariantSerializer(serializers.ModelSerializer):
    class Meta:
        model = PolicyVariant
        fields = ["id", "name", "model_name", "base_url", "temperature_min", "temperature_max", "top_p",
                  "max_new_tokens", "sampling_weight", "is_active", "awaiting_approval", "notes"]
        read_only_fields = fields


class GenerationSerializer(serializers.ModelSerializer):
    variant = serializers.SlugRelatedField(slug_field="name", read_only=True)

    class Meta:
        model = Generation
        fields = ["id", "pair", "position", "variant", "model_name", "temperature", "top_p", "seed",
                  "max_tokens", "status", "text", "finish_reason", "prompt_tokens", "completion_tokens",
                  "first_token_ms", "latency_ms", "attempts", "error", "created_at", "started_at",
                  "finished_at"]
        read_only_fields = fields


class PairSerializer(serializers.ModelSerializer):
    generations = GenerationSerializer(many=True, read_only=True)

    class Meta:
        model = Pair
        fields = ["id", "messages", "strategy", "pairing", "created_at", "generations"]
        read_only_fields = fields


class BlindGenerationSerializer(serializers.Serializer):
    """One response as an annotator sees it: its text and its state only. No variant, no sampling
    settings, and nothing that could fingerprint one (no timing, no token counts, no finish reason):
    the API's generation detail and every turn's two responses (annotation's TurnSerializer).
    Its fields are declared, not derived from the model (faster, and nothing new leaks by default)."""

    id = strict.IntegerField()
    status = strict.CharField()
    text = strict.CharField()
    error = strict.CharField(source="annotator_error_for_pair",
                             help_text="Generic, with a reference staff can look up; empty unless failed.")
