"""What a researcher may set when launching a run of each kind, read from the owner: the job's config
dataclass (``setting(...)`` fields in training/jobs/*.py give each one's default, help text and
bounds or choices). The launch's validator (here), the dashboard's forms (forms.py), the API's
serializers (api.py) and the `training` command are all derived from it; none of them lists a
setting of its own."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from core.values import yes_no

from .jobs import common
from .jobs.context_distillation import ContextDistillationJobConfig
from .jobs.dpo import DPOJobConfig
from .jobs.gatt import GAttJobConfig
from .jobs.policy_eval import PolicyEvalJobConfig
from .jobs.ppo import PPOJobConfig
from .jobs.rejection_sampling import RejectionSamplingJobConfig
from .jobs.reward import RewardJobConfig
from .jobs.rloo import RLOOJobConfig
from .jobs.sft import SFTJobConfig
from .models import TrainingRun

# Each kind's job config: the owner of its settings.
CONFIGS = {
    TrainingRun.Kind.REWARD_MODEL: RewardJobConfig,
    TrainingRun.Kind.SFT: SFTJobConfig,
    TrainingRun.Kind.REJECTION_SAMPLING: RejectionSamplingJobConfig,
    TrainingRun.Kind.PPO: PPOJobConfig,
    TrainingRun.Kind.GATT: GAttJobConfig,
    TrainingRun.Kind.POLICY_EVAL: PolicyEvalJobConfig,
    TrainingRun.Kind.DPO: DPOJobConfig,
    TrainingRun.Kind.RLOO: RLOOJobConfig,
    TrainingRun.Kind.CONTEXT_DISTILLATION: ContextDistillationJobConfig,
}
POLICY_KINDS = tuple(kind for kind in CONFIGS if kind != TrainingRun.Kind.REWARD_MODEL)


@dataclass(frozen=True)
class JobSetting:
    name: str
    type: type
    default: Any
    help: str
    low: float | None
    high: float | None
    choices: tuple[str, ...]
    label: str
    pattern: str = ""

    @property
    def title(self) -> str:
        return self.label or self.name.replace("_", " ").capitalize()


def settings_for(kind: str) -> dict[str, JobSetting]:
    """name → JobSetting of what a run of ``kind`` may set, in the config's order."""
    return {name: JobSetting(name, kind_, default, meta.help, meta.low, meta.high, meta.choices, meta.label,
                             meta.pattern)
            for name, (kind_, default, meta) in common.settings_of(CONFIGS[kind]).items()}


def all_settings(kinds=POLICY_KINDS) -> dict[str, JobSetting]:
    """Every setting of any of ``kinds`` (the policy form offers them all; each kind takes its own).
    A setting two kinds share is the first kind's (its bounds are the validator's business per kind)."""
    merged: dict[str, JobSetting] = {}
    for kind in kinds:
        for name, item in settings_for(kind).items():
            merged.setdefault(name, item)
    return merged


def _value(item: JobSetting, raw):
    """``raw`` as the setting's type within its bounds or choices; ValueError with the reason."""
    if item.type is bool:
        try:
            return yes_no(raw)
        except ValueError:
            raise ValueError("Yes or no.") from None
    if item.choices:
        if raw not in item.choices:
            raise ValueError(f"Use one of {', '.join(item.choices)}.")
        return raw
    if item.type is str:
        if not isinstance(raw, str) or (item.pattern and not re.fullmatch(item.pattern, raw)):
            raise ValueError(f"{item.help} Not {raw!r}.")
        return raw
    try:
        if isinstance(raw, bool):
            raise ValueError
        number = item.type(raw) if item.type is float else _integer(raw)
    except (TypeError, ValueError):
        raise ValueError(f"Not a number: {raw!r}.") from None
    if (item.type is float and not math.isfinite(number)) or \
            (item.low is not None and number < item.low) or (item.high is not None and number > item.high):
        raise ValueError(f"Must be between {item.low:g} and {item.high:g}.")
    return number


def _integer(raw) -> int:
    if isinstance(raw, float) and not raw.is_integer():
        raise ValueError
    return int(raw)


def settings_validate(kind: str, given: dict | None, errors: dict | None = None) -> dict:
    """The settings of a run of ``kind``: every one of them, ``given`` values (checked against the
    config's bounds and choices) over the job's defaults. A refusal per setting goes into ``errors``
    (raised as ValidationError when no ``errors`` is passed in); empty values mean the default."""
    own = errors is None
    errors = {} if own else errors
    allowed = settings_for(kind)
    label = TrainingRun.Kind(kind).label
    values = {name: item.default for name, item in allowed.items()}
    for name, raw in (given or {}).items():
        if raw is None or raw == "":
            continue
        if name not in allowed:
            errors[name] = f"{name} is not a setting of a {label} run."
            continue
        try:
            values[name] = _value(allowed[name], raw)
        except ValueError as error:
            errors[name] = str(error)
    if own and errors:
        raise ValidationError(errors)
    return values
