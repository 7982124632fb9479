"""A judgement of a pair and its rules, shared by the first judgement of a turn
(annotation.workspace.services.judgement_submit) and its overlap reviews
(annotation.workspace.review.review_submit)."""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import ValidationError

from modelserving.models import Generation

from ..models import Focus, SafetyBin, Strength

MAX_TIME_SPENT_MS = 24 * 3600 * 1000
MAX_REASON_CHARS = 2000  # why a pair is unusable, a gold item's note


@dataclass(frozen=True)
class Judgement:
    """What the annotator says about a pair, in the terms of the screen (sides A and B)."""

    choice: str | None = None  # "A" or "B"; None when both are unusable
    strength: str | None = None
    safe_a: bool | None = None
    safe_b: bool | None = None
    both_unusable: bool = False
    unusable_reason: str = ""
    time_spent_ms: int | None = None


def safety_bin(*, chosen_safe: bool, other_safe: bool) -> str:
    if chosen_safe and not other_safe:
        return SafetyBin.CHOSEN_SAFE_OTHER_UNSAFE
    if chosen_safe and other_safe:
        return SafetyBin.BOTH_SAFE
    if not chosen_safe and not other_safe:
        return SafetyBin.BOTH_UNSAFE
    raise ValidationError(
        "You chose the response you labelled unsafe over one you labelled safe. A safe response is "
        "always preferred to an unsafe one: choose the safe response, or correct the labels."
    )


def resolve_judgement(a: Generation, b: Generation, *, focus: str, judgement: Judgement) -> dict:
    """The stored fields for ``judgement`` of responses A and B, or ValidationError naming the first
    broken rule. Judgements of turns and their overlap reviews follow the same rules."""
    if judgement.both_unusable:
        reason = (judgement.unusable_reason or "").strip()
        if not reason:
            raise ValidationError({"unusable_reason": "Say why neither response can be used."})
        if len(reason) > MAX_REASON_CHARS:
            raise ValidationError({"unusable_reason": f"Keep the reason under {MAX_REASON_CHARS} characters."})
        if judgement.choice or judgement.strength:
            raise ValidationError("A pair marked both unusable has no winner: leave the scale empty.")
        return {"chosen_generation_id": None, "strength": "", "chosen_safe": None, "other_safe": None,
                "safety_bin": "", "both_unusable": True, "unusable_reason": reason}
    if judgement.choice not in ("A", "B"):
        raise ValidationError({"choice": "Say which response is better: pick a point on the scale (keys 1–8)."})
    if judgement.strength not in Strength.values:
        raise ValidationError({"strength": "Say how much better: pick a point on the scale (keys 1–8)."})
    chosen, other = (a, b) if judgement.choice == "A" else (b, a)
    if chosen.status == Generation.Status.DONE and not chosen.text.strip():
        # The chosen response becomes the context of the next turn, and an empty one cannot be.
        raise ValidationError({"choice": "The response you chose is empty: choose the other one, or mark both "
                                         "unusable."})
    fields = {"chosen_generation_id": chosen.id, "strength": judgement.strength, "chosen_safe": None,
              "other_safe": None, "safety_bin": "", "both_unusable": False, "unusable_reason": ""}
    if focus == Focus.SAFETY:
        if judgement.safe_a is None or judgement.safe_b is None:
            raise ValidationError({"safety": "Label both responses safe or unsafe."})
        chosen_safe, other_safe = ((judgement.safe_a, judgement.safe_b) if judgement.choice == "A"
                                   else (judgement.safe_b, judgement.safe_a))
        fields.update(chosen_safe=chosen_safe, other_safe=other_safe,
                      safety_bin=safety_bin(chosen_safe=chosen_safe, other_safe=other_safe))
    return fields


JUDGEMENT_FIELDS = ("chosen_generation_id", "strength", "chosen_safe", "other_safe", "safety_bin",
                    "both_unusable", "unusable_reason")
