"""The 8-point judging scale: A significantly better … A negligibly better | B negligibly … B significantly.

Keys 1–8 map to points 1–8; point ↔ (side, strength) is the only translation, used by both the
workspace and the API.
"""

from ..models import Strength

SIDES = ("A", "B")
_A_SIDE = [Strength.SIGNIFICANTLY_BETTER, Strength.BETTER, Strength.SLIGHTLY_BETTER, Strength.NEGLIGIBLY_BETTER]
POINTS = {index + 1: ("A", strength) for index, strength in enumerate(_A_SIDE)}
POINTS.update({8 - index: ("B", strength) for index, strength in enumerate(_A_SIDE)})
LABELS = {point: f"{side} {Strength(strength).label}" for point, (side, strength) in POINTS.items()}


def from_point(point: int) -> tuple[str, str]:
    return POINTS[point]


def to_point(side: str, strength: str) -> int:
    return next(point for point, value in POINTS.items() if value == (side, strength))
