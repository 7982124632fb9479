"""Choosing the two sampling configurations of a pair. Pure: no database, no clock.

Two or more active variants: two different variants, drawn by weight without replacement, each
at a temperature drawn uniformly from its own range. One active variant: that variant at two
temperatures at least ``min_gap`` apart. Every draw, seed included, is returned to be recorded.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

from core.exceptions import Unavailable


class NoActiveVariant(Unavailable):
    """There is nothing to sample from."""


@dataclass(frozen=True)
class VariantSpec:
    id: int
    name: str
    temperature_min: float
    temperature_max: float
    sampling_weight: float


@dataclass(frozen=True)
class SamplingChoice:
    variant_id: int
    temperature: float
    seed: int


@dataclass(frozen=True)
class PairPlan:
    strategy: str  # "two_variants" or "one_variant_two_temperatures"
    first: SamplingChoice
    second: SamplingChoice
    record: dict  # candidates and draws, stored on the Pair

    @property
    def choices(self) -> tuple[SamplingChoice, SamplingChoice]:
        return self.first, self.second


SEED_BOUND = 2**31 - 1


def _temperature(rng: random.Random, low: float, high: float) -> float:
    return round(rng.uniform(low, high), 4)


def _weighted_pick(rng: random.Random, variants: list[VariantSpec]) -> VariantSpec:
    total = sum(v.sampling_weight for v in variants)
    if total <= 0:
        return rng.choice(variants)
    point = rng.uniform(0, total)
    running = 0.0
    for variant in variants:
        running += variant.sampling_weight
        if point <= running:
            return variant
    return variants[-1]


def two_temperatures(rng: random.Random, low: float, high: float, min_gap: float) -> tuple[float, float]:
    """Two temperatures in [low, high] at least ``min_gap`` apart, in random order.

    A range narrower than the gap is widened around its middle (never below 0) so that the two
    samples still differ clearly.
    """
    if high - low < min_gap:
        middle = (low + high) / 2
        low = max(0.0, middle - min_gap / 2)
        high = low + min_gap
    cooler = _temperature(rng, low, high - min_gap)
    warmer = _temperature(rng, min(high, cooler + min_gap), high)
    if warmer - cooler < min_gap:  # rounding at the edge
        warmer = round(cooler + min_gap, 4)
    return (cooler, warmer) if rng.random() < 0.5 else (warmer, cooler)


NO_VARIANT = "No active policy variant to sample from: activate one in the admin."
# Annotators read this one: it names no variant (staff see which on /health and the variants page).
TOO_FEW_ANSWER = ("Fewer than two models can answer right now, so no pair can be sampled. "
                  "Try again in a few minutes.")


def candidates(variants: list[VariantSpec]) -> list[VariantSpec]:
    """The variants a pair is drawn from: those with a weight, or all of them when none has one."""
    return [v for v in variants if v.sampling_weight > 0] or list(variants)


def pairing_refusal(active: list[VariantSpec], answering: list[VariantSpec]) -> str | None:
    """Why no pair can be planned now, or None. ``active``: the variants admins set up;
    ``answering``: those of them in pairing now. Two or more set up need two answering (the
    comparison the admins asked for, never quietly one variant against itself); one set up is
    sampled at two temperatures as long as it answers."""
    if not active:
        return NO_VARIANT
    wanted = min(2, len(candidates(active)))
    if len(candidates(answering)) < wanted or not answering:
        return TOO_FEW_ANSWER
    return None


def plan_pair(variants: list[VariantSpec], *, rng: random.Random, min_gap: float) -> PairPlan:
    drawn_from = candidates(variants)
    if not drawn_from:
        raise NoActiveVariant(NO_VARIANT)
    record = {"candidates": [asdict(v) for v in drawn_from], "min_gap": min_gap}
    if len(drawn_from) >= 2:
        first = _weighted_pick(rng, drawn_from)
        second = _weighted_pick(rng, [v for v in drawn_from if v.id != first.id])
        choices = (
            SamplingChoice(first.id, _temperature(rng, first.temperature_min, first.temperature_max),
                           rng.randrange(SEED_BOUND)),
            SamplingChoice(second.id, _temperature(rng, second.temperature_min, second.temperature_max),
                           rng.randrange(SEED_BOUND)),
        )
        strategy = "two_variants"
    else:
        (only,) = drawn_from
        t1, t2 = two_temperatures(rng, only.temperature_min, only.temperature_max, min_gap)
        choices = (
            SamplingChoice(only.id, t1, rng.randrange(SEED_BOUND)),
            SamplingChoice(only.id, t2, rng.randrange(SEED_BOUND)),
        )
        strategy = "one_variant_two_temperatures"
    record["choices"] = [asdict(c) for c in choices]
    return PairPlan(strategy=strategy, first=choices[0], second=choices[1], record=record)
