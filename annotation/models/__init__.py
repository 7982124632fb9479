"""The annotation app's models, one module per topic: dialogues and judgements (with batches and
demonstrations), imported preference data, quality (overlap review, gold items), frozen batches'
exports; ``frozen`` holds the triggers their Meta declares."""

from .dialogues import (
    AnswerTemplate,
    AttackVector,
    Batch,
    Demonstration,
    Dialogue,
    Focus,
    Guideline,
    JudgementFields,
    RiskCategory,
    SafetyBin,
    Strength,
    TaggedList,
    Turn,
)
from .exports import ExportJob, FrozenGeneration, FrozenPair
from .imported import ImportedComparison, PreferenceSource
from .quality import GoldItem, OverlapPolicy, ReviewTask

__all__ = [
    "AnswerTemplate", "AttackVector", "Batch", "Demonstration", "Dialogue", "ExportJob", "Focus", "FrozenGeneration",
    "FrozenPair",
    "GoldItem", "Guideline", "ImportedComparison", "JudgementFields", "OverlapPolicy", "PreferenceSource", "ReviewTask",
    "RiskCategory", "SafetyBin", "Strength", "TaggedList", "Turn",
]
