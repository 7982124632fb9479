"""The loop benchmark's profiles (how big each step is) and the tastes its simulated annotators
follow: `(context, response) -> float` functions, the contract of `manage.py simulate_annotators`."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from annotation.workspace.simulation import (
    DEFAULT_THRESHOLDS,
    POLITE_WORDS,
    SimulationError,
    load_callable,
    parse_thresholds,
    read_prompts,
)

_WORD = re.compile(r"[A-Za-z']+")


def concise_preference(context: list[dict], response: str) -> float:
    """Concision: a tenth of a point off per word, so ten words shorter is 'significantly better',
    five 'better' and two 'slightly better' with the default thresholds. SmolLM2, asked to answer in
    one or two sentences (the cpu and gpu profiles add that to every prompt), sometimes does and
    sometimes runs on to the token limit, so two samples of one prompt differ in this taste in most
    pairs; a reward model can read it off the answer, and a policy can learn it from its own best
    samples. An answer without words scores −10 (an empty answer is no answer)."""
    words = _WORD.findall(response)
    return -0.1 * len(words) if words else -10.0


def polite_words_preference(context: list[dict], response: str) -> float:
    """Politeness, counted: 0.4 per polite word (annotation.workspace.simulation.POLITE_WORDS), so one more
    polite word is 'slightly better', two 'better', three 'significantly better' with the default
    thresholds. The taste of the `tiny` profile, whose model answers in plain and polite sentences."""
    return 0.4 * sum(word in POLITE_WORDS for word in _WORD.findall(response.lower()))



@dataclass(frozen=True)
class Profile:
    """How big each step is. Printed with the results, so a figure always comes with its budget."""

    name: str
    preference: str  # dotted path of the default preference function
    annotators: int  # concurrent simulated annotators
    judgements: int  # round-0 judgements (one turn per dialogue)
    train_prompts: int  # distinct training prompts (each judged several times when N is larger)
    held_out_prompts: int  # disjoint prompts for the verdict
    max_new_tokens: int  # the variants' answer budget during the run
    k: int  # rejection-sampling samples per training prompt
    rs_temperature: float
    eval_temperature: float
    verdict_judgements: int  # the short round with every variant active
    reward: dict = field(default_factory=dict)  # the RM launch's settings
    policy: dict = field(default_factory=dict)  # SFT settings of the rejection-sampling round
    ppo: dict = field(default_factory=dict)
    dpo: dict = field(default_factory=dict)  # the DPO round's settings
    rloo: dict = field(default_factory=dict)  # the online-RL round's settings
    noise: float = 0.1
    thresholds: tuple = DEFAULT_THRESHOLDS
    timeout: float = 3600.0  # seconds to wait for one training run
    prompt_suffix: str = ""  # added to every prompt (an instruction the taste is about)


PROFILES = {
    # The tests' tiny Llama taught to answer in plain and polite sentences (tests/helpers/tiny_chat.py):
    # minutes on a CPU. The taste is politeness (polite words, counted), which its samples vary on.
    "tiny": Profile(
        name="tiny", preference="bench.loop_profiles.polite_words_preference", annotators=4, judgements=240,
        train_prompts=40, held_out_prompts=64, max_new_tokens=32, k=8, rs_temperature=1.0, eval_temperature=1.0,
        verdict_judgements=16, noise=0.1, thresholds=(1.0, 0.5, 0.2),
        reward={"learning_rate": 1e-3, "epochs": 6, "batch_size": 16, "per_device_batch_size": 16,
                "max_length": 128},
        policy={"learning_rate": 1e-3, "epochs": 4, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
                "max_length": 128},
        ppo={"iterations": 4, "batch_size": 16, "mini_batch_size": 8, "rollout_batch_size": 8,
             "max_new_tokens": 32, "learning_rate": 1e-4},
        dpo={"learning_rate": 1e-3, "epochs": 2, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
             "max_length": 128, "gradient_checkpointing": False},
        rloo={"steps": 8, "prompts_per_step": 4, "k": 4, "learning_rate": 1e-4, "gradient_checkpointing": False},
        timeout=900),
    # SmolLM2-135M-Instruct with short answers on a 2-core machine: within about an hour. The taste is
    # concision; every prompt asks for one or two sentences, which SmolLM2 follows only some of the time.
    "cpu": Profile(
        name="cpu", preference="bench.loop_profiles.concise_preference", annotators=4, judgements=240,
        train_prompts=60, held_out_prompts=40, max_new_tokens=64, k=4, rs_temperature=1.0, eval_temperature=0.7,
        verdict_judgements=24, noise=0.1, thresholds=(1.0, 0.5, 0.2),
        # Only the top blocks train (and the RM's scalar head): a step costs about one forward pass, so
        # the RM takes minutes instead of 40 (all 30 blocks, 3 epochs, measured at about 1 min a step).
        reward={"learning_rate": 2e-4, "epochs": 2, "batch_size": 16, "per_device_batch_size": 8,
                "max_length": 256, "trainable_layers": 6},
        policy={"learning_rate": 1e-4, "epochs": 3, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
                "max_length": 256, "trainable_layers": 8, "gradient_checkpointing": False},
        ppo={"iterations": 8, "batch_size": 32, "mini_batch_size": 8, "rollout_batch_size": 8,
             "max_new_tokens": 64, "learning_rate": 1e-6},
        dpo={"learning_rate": 5e-6, "epochs": 2, "per_device_batch_size": 4, "gradient_accumulation_steps": 4,
             "max_length": 256, "trainable_layers": 8, "gradient_checkpointing": False, "eval_steps": 5},
        rloo={"steps": 30, "prompts_per_step": 4, "k": 4, "learning_rate": 1e-5, "trainable_layers": 8,
              "gradient_checkpointing": False},
        timeout=3600, prompt_suffix=" Answer in one or two sentences."),
    # A GPU box: more judgements, more samples, full-length answers.
    "gpu": Profile(
        name="gpu", preference="bench.loop_profiles.concise_preference", annotators=16, judgements=1200,
        train_prompts=89, held_out_prompts=30, max_new_tokens=256, k=8, rs_temperature=1.0, eval_temperature=0.7,
        verdict_judgements=96, noise=0.1, thresholds=(1.0, 0.5, 0.2),
        reward={"learning_rate": 1e-5, "epochs": 2, "batch_size": 64, "per_device_batch_size": 16,
                "max_length": 1024},
        policy={"learning_rate": 1e-5, "epochs": 2, "per_device_batch_size": 16, "gradient_accumulation_steps": 1,
                "max_length": 1024},
        ppo={"iterations": 40, "batch_size": 64, "mini_batch_size": 16, "rollout_batch_size": 32,
             "max_new_tokens": 256, "learning_rate": 1e-6},
        dpo={"learning_rate": 5e-7, "epochs": 2, "per_device_batch_size": 8, "gradient_accumulation_steps": 8,
             "max_length": 1024, "eval_steps": 10},
        rloo={"steps": 100, "prompts_per_step": 16, "k": 8, "learning_rate": 1e-6},
        timeout=7200, prompt_suffix=" Answer in one or two sentences."),
}




# A taste a user brings without editing code: one JSON file (`--taste`).
TASTE_KEYS = ("preference", "prompts", "prompt_suffix", "thresholds", "noise")


def read_taste(path: str | Path) -> dict:
    """A taste bundle: a JSON object with any of ``preference`` (a dotted path, or ``file.py:name``
    with the file relative to the bundle), ``prompts`` (a file of one prompt per line, relative to the
    bundle), ``prompt_suffix`` (added to every prompt), ``thresholds`` (three decreasing score gaps)
    and ``noise`` (the annotators' score noise). Returns what it gives, checked (the preference
    loaded, the prompts read); SimulationError with the reason otherwise."""
    path = Path(path)
    try:
        bundle = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SimulationError(f"Cannot read the taste {path}: {error}") from error
    if not isinstance(bundle, dict):
        raise SimulationError(f"The taste {path} is a JSON object with some of {', '.join(TASTE_KEYS)}.")
    if unknown := sorted(set(bundle) - set(TASTE_KEYS)):
        raise SimulationError(f"The taste {path} has {', '.join(unknown)}: a taste gives {', '.join(TASTE_KEYS)}.")
    taste = {}
    if "preference" in bundle:
        preference = str(bundle["preference"])
        file_name, colon, name = preference.rpartition(":")
        if colon and file_name.endswith(".py"):
            preference = f"{(path.parent / file_name).resolve()}:{name}"
        load_callable(preference)
        taste["preference"] = preference
    if "prompts" in bundle:
        prompts_path = path.parent / str(bundle["prompts"])
        read_prompts(prompts_path)
        taste["prompts"] = str(prompts_path.resolve())
    if "prompt_suffix" in bundle:
        suffix = bundle["prompt_suffix"]
        if not isinstance(suffix, str) or len(suffix) > 500 or "\x00" in suffix:
            raise SimulationError(f"The taste {path}: prompt_suffix is text of at most 500 characters.")
        taste["prompt_suffix"] = suffix if not suffix or suffix[0].isspace() else " " + suffix
    if "thresholds" in bundle:
        taste["thresholds"] = parse_thresholds(bundle["thresholds"])
    if "noise" in bundle:
        noise = bundle["noise"]
        if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
            raise SimulationError(f"The taste {path}: noise is a number ≥ 0, not {noise!r}.")
        taste["noise"] = float(noise)
    return taste
