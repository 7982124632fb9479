"""Simulated annotators: judgements that follow a preference function, sent over the public API.

`manage.py simulate_annotators` runs them for demos, load tests and end-to-end tests of the loop.
This module holds the taste (preference and safety functions, the PreferenceModel that turns two
scores into a judgement) and the run; one annotator's HTTP session is
annotation/workspace/simulated_annotator.py.
Nothing here imports Django: the annotators are programmatic clients of a running Tandem (token
auth, `/api/...`), so what they exercise is what any client sees.

A *preference function* scores one response given the context the models saw,
``(context: list[dict], response: str) -> float``, higher is better; a *safety function* says
whether a response is safe, ``(context, response) -> bool``. Both are named by dotted path and
must be pure: annotator threads call them concurrently.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import math
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from core.preference_scale import NEGLIGIBLY_BETTER, SIGNIFICANTLY_BETTER, STRENGTHS

from .simulated_annotator import AnnotatorReport, SimulatedAnnotator

Preference = Callable[[list[dict], str], float]
Safety = Callable[[list[dict], str], bool]

# Score gaps at or above which a judgement is significantly better / better / slightly better.
DEFAULT_THRESHOLDS = (1.0, 0.5, 0.2)
FOCI = ("helpfulness", "safety", "mixed")
# How a simulated annotator behaves: careful (follows the preference function, with its noise), a
# spammer (a random side and a random strength), position-biased (takes the response shown as A with
# probability `position_bias`, else judges carefully), adversarial (prefers the side the preference
# function finds worse). The bad kinds are what the quality room must catch.
ANNOTATOR_KINDS = ("careful", "spammer", "position_biased", "adversarial")

DEFAULT_PROMPTS = (
    "How do I make a good cup of coffee at home?",
    "Explain photosynthesis to a ten-year-old.",
    "Write a short poem about the sea.",
    "What should I pack for a weekend of hiking?",
    "Can you help me write a polite email declining an invitation?",
    "What are the pros and cons of working from home?",
    "Summarise the plot of Romeo and Juliet in three sentences.",
    "How can I get better at remembering names?",
)


class SimulationError(ValueError):
    """A simulation that cannot start: a bad option, or a Tandem that cannot be reached."""


# --- Example preference and safety functions -------------------------------------------------


def length_preference(context: list[dict], response: str) -> float:
    """Longer is better: one point per 200 characters (so 40 more is 'slightly better' by default)."""
    return len(response.strip()) / 200


POLITE_WORDS = frozenset({"thank", "thanks", "please", "gladly", "glad", "happy", "welcome", "certainly",
                          "sure", "sorry", "kindly"})
_WORD = re.compile(r"[a-z']+")


def keyword_preference(context: list[dict], response: str) -> float:
    """Politeness: the share of the response's words found in POLITE_WORDS, times ten, so that a
    gap of ten percentage points is 'significantly better' with the default thresholds."""
    words = _WORD.findall(response.lower())
    if not words:
        return 0.0
    return 10 * sum(word in POLITE_WORDS for word in words) / len(words)


def always_safe(context: list[dict], response: str) -> bool:
    return True


UNSAFE_WORDS = frozenset({"weapon", "explosive", "poison", "overdose", "steal"})


def blocklist_safety(context: list[dict], response: str) -> bool:
    """Unsafe when the response uses a word of UNSAFE_WORDS: a crude stand-in for a safety rater."""
    return not UNSAFE_WORDS.intersection(_WORD.findall(response.lower()))


# --- Options --------------------------------------------------------------------------------


def load_callable(path: str, *, what: str = "preference function") -> Callable:
    """The callable at ``path`` that takes (context, response): 'package.module.name', or a Python
    file and a name in it, 'path/to/taste.py:name' (a user's own taste, no package needed)."""
    path = (path or "").strip()
    file_name, colon, name = path.rpartition(":")
    if colon and file_name.endswith(".py"):
        module_name, attribute = f"_tandem_taste_{abs(hash(file_name))}", name
        try:
            spec = importlib.util.spec_from_file_location(module_name, file_name)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module  # what dataclasses and pickling look a module up by
            spec.loader.exec_module(module)
        except Exception as error:  # a missing file, or one that fails while running
            raise SimulationError(f"Cannot load {file_name!r} for the {what} {path!r}: "
                                  f"{error.__class__.__name__}: {error}") from error
    else:
        module_name, _, attribute = path.rpartition(".")
        if not module_name or not attribute:
            raise SimulationError(f"{path!r} is not a dotted path to a {what}: write package.module.name, "
                                  "e.g. annotation.workspace.simulation.length_preference, or file.py:name.")
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # a missing module, or one that fails while importing
            raise SimulationError(f"Cannot import {module_name!r} for the {what} {path!r}: "
                                  f"{error.__class__.__name__}: {error}") from error
    target = getattr(module, attribute, None)
    if target is None:
        raise SimulationError(f"Module {module_name!r} has no {attribute!r}, so {path!r} names no {what}.")
    if not callable(target):
        raise SimulationError(f"{path!r} is a {type(target).__name__}, not a callable {what}.")
    try:
        inspect.signature(target).bind([], "")
    except TypeError as error:
        raise SimulationError(f"The {what} {path!r} must take (context, response): {error}.") from error
    except ValueError:  # no signature to inspect (some builtins): find out when it is called
        pass
    return target


def parse_thresholds(value: str | Sequence[float]) -> tuple[float, float, float]:
    """'1.0,0.5,0.2' (or three numbers) → thresholds; SimulationError unless a > b > c ≥ 0."""
    try:
        parts = value.split(",") if isinstance(value, str) else list(value)
        numbers = tuple(float(part) for part in parts)
    except (TypeError, ValueError):
        numbers = ()
    if (len(numbers) != 3 or not all(math.isfinite(n) for n in numbers)
            or not numbers[0] > numbers[1] > numbers[2] >= 0):
        raise SimulationError(f"Thresholds {value!r}: give three decreasing score gaps, e.g. 1.0,0.5,0.2 "
                              "(significantly better, better, slightly better; below the last: negligibly).")
    return numbers


def read_prompts(path: str | Path) -> tuple[str, ...]:
    """One prompt per line; blank lines are skipped."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise SimulationError(f"Cannot read prompts from {path}: {error}") from error
    prompts = tuple(line.strip() for line in lines if line.strip())
    if not prompts:
        raise SimulationError(f"{path} holds no prompt (one per line).")
    return prompts


# --- The judgement --------------------------------------------------------------------------


def _other(side: str) -> str:
    return "B" if side == "A" else "A"


@dataclass(frozen=True)
class Decision:
    payload: dict  # the body of POST /api/turns/<id>/judgement/
    preferred: str | None  # the side the noiseless preference function scores higher; None on a tie
    override: str = ""  # "safety" or "blank" when a rule, not the scores, decided the choice

    @property
    def choice(self) -> str | None:
        return self.payload.get("choice")

    @property
    def agrees(self) -> bool | None:
        """Whether the judgement chose what the noiseless preference function prefers (None: a tie)."""
        return None if self.preferred is None else self.choice == self.preferred


@dataclass(frozen=True)
class PreferenceModel:
    preference: Preference
    noise: float = 0.0  # std-dev of the Gaussian noise added to each score; 0 = deterministic
    thresholds: tuple[float, float, float] = DEFAULT_THRESHOLDS
    safety: Safety = always_safe
    kind: str = "careful"  # one of ANNOTATOR_KINDS
    position_bias: float = 0.9  # position_biased: the share of turns where A is taken whatever it says

    def __post_init__(self):
        if not (math.isfinite(self.noise) and self.noise >= 0):
            raise SimulationError(f"Noise {self.noise!r}: give a standard deviation ≥ 0.")
        if self.kind not in ANNOTATOR_KINDS:
            raise SimulationError(f"Annotator kind {self.kind!r}: use one of {', '.join(ANNOTATOR_KINDS)}.")
        if not 0 <= self.position_bias <= 1:
            raise SimulationError(f"Position bias {self.position_bias!r}: a share between 0 and 1.")
        object.__setattr__(self, "thresholds", parse_thresholds(self.thresholds))

    @classmethod
    def from_paths(cls, *, preference: str, noise: float = 0.0,
                   thresholds: str | Sequence[float] = DEFAULT_THRESHOLDS, safety: str | None = None):
        return cls(preference=load_callable(preference), noise=float(noise),
                   thresholds=parse_thresholds(thresholds),
                   safety=load_callable(safety, what="safety function") if safety else always_safe)

    def score(self, context: list[dict], response: str) -> float:
        value = self.preference(context, response)
        try:
            value = float(value)
        except (TypeError, ValueError):
            value = math.nan
        if not math.isfinite(value):
            raise SimulationError(f"The preference function returned {value!r}; it must return a finite "
                                  "number.")
        return value

    def strength(self, gap: float) -> str:
        """The strength for a (non-negative) score gap."""
        for threshold, strength in zip(self.thresholds, STRENGTHS):
            if gap >= threshold:
                return strength
        return NEGLIGIBLY_BETTER

    def judge(self, *, context: list[dict], response_a: str, response_b: str, focus: str,
              rng: random.Random) -> Decision:
        """What this annotator says about responses A and B of one turn.

        The noisy scores decide the side and the gap the strength; two rules then apply, as they
        would for a careful human: an empty response is never chosen over a written one (both
        empty: the pair is unusable), and in the safety focus both responses are labelled and an
        unsafe response is never chosen over a safe one (the server refuses that).
        """
        score_a, score_b = self.score(context, response_a), self.score(context, response_b)
        preferred = "A" if score_a > score_b else "B" if score_b > score_a else None
        blank = {"A": not response_a.strip(), "B": not response_b.strip()}
        if blank["A"] and blank["B"]:
            unusable = {"both_unusable": True, "unusable_reason": "Both responses are empty."}
            return Decision(unusable, preferred, override="blank")
        if self.noise:
            score_a += rng.gauss(0.0, self.noise)
            score_b += rng.gauss(0.0, self.noise)
        gap = score_a - score_b if self.kind != "adversarial" else score_b - score_a
        choice = "A" if gap > 0 else "B" if gap < 0 else rng.choice("AB")
        strength, override = self.strength(abs(gap)), ""
        if self.kind == "spammer":
            choice, strength = rng.choice("AB"), rng.choice(STRENGTHS)
        elif self.kind == "position_biased" and rng.random() < self.position_bias:
            choice = "A"
        # After an override the scores measured the wrong way round; the rule decides, by a lot.
        if blank[choice]:
            choice, strength, override = _other(choice), SIGNIFICANTLY_BETTER, "blank"
        payload = {"choice": choice, "strength": strength}
        if focus == "safety":
            safe = {"A": bool(self.safety(context, response_a)), "B": bool(self.safety(context, response_b))}
            if self.kind == "spammer":
                safe = {"A": rng.random() < 0.5, "B": rng.random() < 0.5}
            if not safe[choice] and safe[_other(choice)]:
                choice, strength, override = _other(choice), SIGNIFICANTLY_BETTER, "safety"
            payload = {"choice": choice, "strength": strength, "safe_a": safe["A"], "safe_b": safe["B"]}
        return Decision(payload, preferred, override)


# --- Annotators over HTTP -------------------------------------------------------------------


@dataclass(frozen=True)
class SimulationConfig:
    base_url: str
    usernames: tuple[str, ...]
    password: str
    model: PreferenceModel
    prompts: tuple[str, ...] = DEFAULT_PROMPTS
    dialogues: int = 1  # per annotator
    turns: int = 2  # per dialogue
    focus: str = "helpfulness"  # helpfulness, safety, or mixed (drawn per dialogue)
    seed: int = 0
    timeout: float = 120.0  # seconds to wait for both responses of one turn
    retries: int = 1  # retries of a failed response, per side and turn
    poll_interval: float = 0.2
    # Retries of a request that met a connection error or a 5xx, for the requests that are safe to
    # repeat: reads, and judgements (the same judgement again is stored once and answered 200).
    request_retries: int = 0
    retry_delay: float = 0.5  # seconds before the first such retry; doubled each time, at most 5 s
    until: float | None = None  # time.monotonic() after which no new dialogue or turn is started
    kinds: tuple[str, ...] = ()  # per annotator (usernames' order): its ANNOTATOR_KINDS; empty: the model's

    def model_for(self, index: int) -> PreferenceModel:
        """The preference model annotator ``index`` judges with: the run's, of its kind."""
        return replace(self.model, kind=self.kinds[index]) if self.kinds else self.model


def parse_kinds(value: str, annotators: int) -> tuple[str, ...]:
    """'careful=7,spammer=2,position_biased=1' → one kind per annotator, in that order; the counts add
    up to ``annotators`` (SimulationError with the reason otherwise)."""
    kinds: list[str] = []
    for part in filter(None, (item.strip() for item in value.split(","))):
        name, _, count = part.partition("=")
        name = name.strip()
        if name not in ANNOTATOR_KINDS:
            raise SimulationError(f"Annotator kind {name!r}: use some of {', '.join(ANNOTATOR_KINDS)} as "
                                  "kind=count, e.g. careful=7,spammer=2,position_biased=1.")
        try:
            number = int(count)
        except ValueError:
            raise SimulationError(f"{part!r}: give a count, kind=count.") from None
        if number < 0:
            raise SimulationError(f"{part!r}: a count of 0 or more.")
        kinds += [name] * number
    if len(kinds) != annotators:
        raise SimulationError(f"The kinds {value!r} count {len(kinds)} annotators, not the {annotators} asked for.")
    return tuple(kinds)


def obtain_tokens(config: SimulationConfig) -> list[str]:
    """One API token per annotator, from POST /api/auth/token/; SimulationError when that fails."""
    tokens = []
    try:
        with httpx.Client(base_url=config.base_url.rstrip("/"), timeout=30) as client:
            for username in config.usernames:
                credentials = {"username": username, "password": config.password}
                response = client.post("/api/auth/token/", json=credentials)
                if response.status_code == 404:
                    raise SimulationError(f"{config.base_url} answers 404 at /api/auth/token/: "
                                          "is it a Tandem?")
                if response.status_code != 200:
                    raise SimulationError(
                        f"Logging in as {username!r} failed ({response.status_code}: {response.text[:200]}). "
                        "Create the accounts with --create-accounts, or give their --password.")
                tokens.append(response.json()["token"])
    except httpx.HTTPError as error:
        raise SimulationError(f"Cannot reach Tandem at {config.base_url}: "
                              f"{error.__class__.__name__}: {error}. "
                              "Is the server running, and is --url right?") from error
    return tokens


@dataclass
class Summary:
    config: SimulationConfig
    reports: list[AnnotatorReport]
    elapsed: float  # seconds, from the first annotator's start to the last one's end

    def total(self, name: str) -> int:
        return sum(getattr(report, name) for report in self.reports)

    @property
    def failures(self) -> list[str]:
        return [f"{report.username}: {failure}" for report in self.reports for failure in report.failures]

    def lines(self) -> list[str]:
        config, stored = self.config, self.total("stored")
        planned = len(config.usernames) * config.dialogues * config.turns
        strengths = sum((report.strengths for report in self.reports), Counter())
        overrides = sum((report.overrides for report in self.reports), Counter())
        compared, agreeing = self.total("compared"), self.total("agreeing")
        waits = sorted(wait for report in self.reports for wait in report.pair_waits)
        lines = [
            f"judgements stored   {stored} of {planned} planned",
            f"failures            {len(self.failures)}",
            f"responses retried   {self.total('retried')}",
            "strengths           " + ", ".join(f"{name} {strengths[name]}" for name in STRENGTHS)
            + f", both unusable {self.total('both_unusable')}",
            "agreement           " + (f"{agreeing / compared:.1%} of {compared} judgements chose the side "
                                      "the noiseless preference scores higher" if compared else "n/a")
            + f" ({self.total('ties')} exact ties left out)",
            "rules applied       " + (", ".join(f"{name} {n}" for name, n in sorted(overrides.items()))
                                      or "none"),
            f"throughput          {stored / self.elapsed if self.elapsed else 0:.2f} judgements/s "
            f"over {self.elapsed:.1f} s",
        ]
        if waits:
            lines.append(f"pair wait           median {waits[len(waits) // 2]:.1f} s, max {waits[-1]:.1f} s")
        lines += [f"  failure: {failure}" for failure in self.failures[:10]]
        if len(self.failures) > 10:
            lines.append(f"  … and {len(self.failures) - 10} more")
        return lines


def run_simulation(config: SimulationConfig) -> Summary:
    """Log every annotator in, run them concurrently, and sum up. SimulationError before any work
    when Tandem cannot be reached or refuses a login."""
    if config.focus not in FOCI:
        raise SimulationError(f"Focus {config.focus!r}: use one of {', '.join(FOCI)}.")
    tokens = obtain_tokens(config)
    annotators = [SimulatedAnnotator(config, index, token) for index, token in enumerate(tokens)]
    started = time.perf_counter()
    for annotator in annotators:
        annotator.start()
    for annotator in annotators:
        annotator.join()
    return Summary(config, [annotator.report for annotator in annotators], time.perf_counter() - started)
