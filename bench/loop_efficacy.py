"""Does the loop work? Judgements made through Tandem → a reward model that learns the annotators'
taste → a rejection-sampling policy that the same taste prefers.

Against a running Tandem (the embedded `make run` stack by default, or any URL with admin and
researcher credentials), through Tandem's own API only:

1. Round 0. Simulated annotators (annotation/simulation.py, as `manage.py simulate_annotators`)
   judge N pairs from the active variants on the training prompts, following a preference
   function `(context, response) -> float` given by dotted path, with Gaussian noise and the
   strength thresholds. A disjoint held-out prompt set is kept for evaluation.
2. Reward model. The batch is frozen (early, forced: the current week), a helpfulness RM is
   launched through the researchers' launch path and awaited; its accuracy on the batch's
   held-out split per strength (Llama 2's Table 8 layout) is read from its checkpoint.
3. Policy round. Rejection sampling: K samples per training prompt from the starting variant,
   the new RM keeps the best, SFT on the kept; the checkpoint is served as a new variant.
   With --ppo, a PPO round from the same RM too.
4. Verdict. A model-based evaluation run has every variant answer the held-out prompts (one
   temperature for all) and the new RM score every answer. From its samples: the RM's agreement
   with the preference function on these fresh pairs (and its accuracy per strength as the
   simulated annotators would label them); the new variant against the starting one as the
   preference function judges them (sides drawn at random), with a Wilson 95 % interval, the
   mean preference scores and the length drift. Then a short round of simulated judgements with
   every variant active, and the human-vote Bradley–Terry leaderboard.

It prints one table and writes every figure as JSON.

    .venv/bin/python bench/loop_efficacy.py --profile cpu            # against `make run`
    .venv/bin/python bench/loop_efficacy.py --profile gpu --url https://tandem.example.org \\
        --admin alice:… --researcher rob:… --annotator-password … --create-annotators

The variants' sampling settings (max new tokens) are set for the profile during the run and put
back at the end. Run it on a stack you can spare: it adds judgements, freezes the current week's
batch early and serves new variants.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import statistics
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from annotation.simulation import (  # noqa: E402  (Django-free: the annotators are HTTP clients)
    DEFAULT_THRESHOLDS,
    POLITE_WORDS,
    STRENGTHS,
    PreferenceModel,
    SimulationConfig,
    load_callable,
    read_prompts,
    run_simulation,
)
from core.statistics import wilson  # noqa: E402

PROMPTS_FILE = ROOT / "bench" / "data" / "loop_prompts.txt"
DEFAULT_PASSWORD = "tandem-loop-bench-pw-7"


_WORD = re.compile(r"[A-Za-z']+")


def plain_words_preference(context: list[dict], response: str) -> float:
    """Plain language: shorter words are better, minus twice the mean word length in letters. A taste
    SmolLM2's samples vary on within one prompt (its answers to the same question range from plain
    to ornate, about 0.6 apart in the median pair), that survives answers cut at the token limit, and
    that a reward model can learn from the words themselves. An answer without words scores −20."""
    words = _WORD.findall(response)
    return -2 * statistics.fmean(len(word) for word in words) if words else -20.0


def polite_words_preference(context: list[dict], response: str) -> float:
    """Politeness, counted: 0.4 per polite word (annotation.simulation.POLITE_WORDS), so one more
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
    noise: float = 0.1
    thresholds: tuple = DEFAULT_THRESHOLDS
    timeout: float = 3600.0  # seconds to wait for one training run


PROFILES = {
    # The tests' tiny Llama taught to answer in plain and polite sentences (tests/helpers/tiny_chat.py):
    # minutes on a CPU. The taste is politeness (polite words, counted), which its samples vary on.
    "tiny": Profile(
        name="tiny", preference="bench.loop_efficacy.polite_words_preference", annotators=4, judgements=240,
        train_prompts=40, held_out_prompts=64, max_new_tokens=32, k=8, rs_temperature=1.0, eval_temperature=1.0,
        verdict_judgements=16, noise=0.1, thresholds=(1.0, 0.5, 0.2),
        reward={"learning_rate": 1e-3, "epochs": 6, "batch_size": 16, "per_device_batch_size": 16,
                "max_length": 128},
        policy={"learning_rate": 1e-3, "epochs": 4, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
                "max_length": 128},
        ppo={"iterations": 4, "batch_size": 16, "mini_batch_size": 8, "rollout_batch_size": 8,
             "max_new_tokens": 32, "learning_rate": 1e-4},
        timeout=900),
    # SmolLM2-135M-Instruct with short answers on a 2-core machine: within about an hour.
    "cpu": Profile(
        name="cpu", preference="bench.loop_efficacy.plain_words_preference", annotators=4, judgements=240,
        train_prompts=60, held_out_prompts=40, max_new_tokens=48, k=4, rs_temperature=1.0, eval_temperature=0.7,
        verdict_judgements=24, noise=0.1, thresholds=(1.0, 0.5, 0.2),
        reward={"learning_rate": 5e-5, "epochs": 2, "batch_size": 16, "per_device_batch_size": 8,
                "max_length": 256},
        policy={"learning_rate": 5e-5, "epochs": 3, "per_device_batch_size": 8, "gradient_accumulation_steps": 1,
                "max_length": 256},
        ppo={"iterations": 8, "batch_size": 32, "mini_batch_size": 8, "rollout_batch_size": 8,
             "max_new_tokens": 48, "learning_rate": 1e-6},
        timeout=3600),
    # A GPU box: more judgements, more samples, full-length answers.
    "gpu": Profile(
        name="gpu", preference="bench.loop_efficacy.plain_words_preference", annotators=16, judgements=1200,
        train_prompts=89, held_out_prompts=30, max_new_tokens=256, k=8, rs_temperature=1.0, eval_temperature=0.7,
        verdict_judgements=96, noise=0.1, thresholds=(1.0, 0.5, 0.2),
        reward={"learning_rate": 1e-5, "epochs": 2, "batch_size": 64, "per_device_batch_size": 16,
                "max_length": 1024},
        policy={"learning_rate": 1e-5, "epochs": 2, "per_device_batch_size": 16, "gradient_accumulation_steps": 1,
                "max_length": 1024},
        ppo={"iterations": 40, "batch_size": 64, "mini_batch_size": 16, "rollout_batch_size": 32,
             "max_new_tokens": 256, "learning_rate": 1e-6},
        timeout=7200),
}


class BenchError(RuntimeError):
    """A step of the loop failed: the message says which and why."""


# --- Prompts ----------------------------------------------------------------------------------


def split_prompts(prompts: tuple[str, ...], *, held_out: int, train: int, seed: int) -> tuple[list, list]:
    """Disjoint (training, held-out) prompt lists, drawn by a seeded hash of each prompt."""
    unique = list(dict.fromkeys(prompts))
    ranked = sorted(unique, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    if len(ranked) < held_out + 2:
        raise BenchError(f"{len(ranked)} distinct prompts: need at least {held_out + 2} "
                         f"({held_out} held out for the verdict and some to train on).")
    return ranked[held_out:held_out + train], ranked[:held_out]


# --- Tandem over HTTP -------------------------------------------------------------------------


class Tandem:
    """Tandem's API as one role sees it (token authentication)."""

    def __init__(self, base_url: str, username: str, password: str, *, timeout: float = 60):
        self.base_url = base_url.rstrip("/")
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout)
        response = self.client.post("/api/auth/token/", json={"username": username, "password": password})
        if response.status_code != 200:
            raise BenchError(f"Logging in to {self.base_url} as {username!r} failed "
                             f"({response.status_code}: {response.text[:200]}).")
        self.client.headers["Authorization"] = f"Token {response.json()['token']}"
        self.username = username

    def call(self, method: str, path: str, *, expect=(200,), **kwargs):
        response = self.client.request(method, path, **kwargs)
        if response.status_code not in expect:
            raise BenchError(f"{method} {path} as {self.username} answered {response.status_code}: "
                             f"{response.text[:500]}")
        return response

    def json(self, method: str, path: str, *, expect=(200,), **kwargs):
        return self.call(method, path, expect=expect, **kwargs).json()

    def every(self, path: str) -> list:
        """All items of a list endpoint, following its pages when it has them."""
        data = self.json("GET", path)
        if isinstance(data, list):
            return data
        items = list(data["results"])
        while data.get("next"):
            data = self.json("GET", data["next"])
            items += data["results"]
        return items


def wait_for_run(researcher: Tandem, run_id: int, *, what: str, timeout: float, log=print) -> dict:
    """Poll a training run until it finishes; BenchError unless it succeeded."""
    deadline = time.monotonic() + timeout
    shown = -1
    while True:
        run = researcher.json("GET", f"/api/training/runs/{run_id}/")
        if run["status"] in ("succeeded", "failed", "cancelled"):
            break
        if run["progress"] is not None and int(run["progress"] * 10) != shown:
            shown = int(run["progress"] * 10)
            log(f"  {what}: {run['status']}, step {run['step']}/{run['max_steps']}")
        if time.monotonic() > deadline:
            raise BenchError(f"{what} (run {run_id}) still {run['status']} after {timeout:.0f} s.")
        time.sleep(2)
    if run["status"] != "succeeded":
        raise BenchError(f"{what} (run {run_id}) {run['status']}: {run['error'][:500]}\n"
                         + "\n".join((run.get("log_tail") or "").splitlines()[-15:]))
    return run


def annotator_accounts(admin: Tandem, *, count: int, password: str, prefix: str, create: bool) -> tuple[str, ...]:
    """`prefix-<i>` usernames; with `create`, those that cannot log in yet are made through
    invitations (POST /api/invitations/, then POST /api/invitations/accept/)."""
    names = tuple(f"{prefix}-{index}" for index in range(count))
    if not create:
        return names
    anonymous = httpx.Client(base_url=admin.base_url, timeout=30)
    for name in names:
        if anonymous.post("/api/auth/token/", json={"username": name, "password": password}).status_code == 200:
            continue  # made by an earlier run
        invitation = admin.json("POST", "/api/invitations/", expect=(201,), json={"role": "annotator"})
        accepted = anonymous.post("/api/invitations/accept/", json={
            "token": invitation["token"], "username": name, "password": password})
        if accepted.status_code != 201:
            raise BenchError(f"Creating annotator {name} failed ({accepted.status_code}: {accepted.text[:300]}).")
    return names


# --- The figures ------------------------------------------------------------------------------


def interval(wins: float, n: int) -> list[float] | None:
    found = wilson(round(wins), n) if n else None
    return [round(found[0], 4), round(found[1], 4)] if found else None


def held_out_accuracy(evaluation: dict) -> dict:
    """The reward job's evaluation on the batch's held-out split (percentages) as shares."""
    accuracy, counts = evaluation.get("accuracy") or {}, evaluation.get("counts") or {}

    def share(key):
        return None if accuracy.get(key) is None else round(accuracy[key] / 100, 4)

    return {"pairs": evaluation.get("pairs"), "accuracy": share("overall"),
            "accuracy_per_strength": {s: {"accuracy": share(f"strength={s}"), "pairs": counts.get(f"strength={s}", 0)}
                                      for s in STRENGTHS},
            "table8": evaluation.get("table")}


def rm_agreement(rows: list[dict], *, model: PreferenceModel, variants: list[str], rng: random.Random) -> dict:
    """On fresh pairs (two variants' answers to one held-out prompt): how often the reward model
    orders them as the preference function does, and its accuracy per strength level when the pair
    is labelled as a simulated annotator would label it (noise, thresholds)."""
    by_prompt: dict[str, dict] = {}
    for row in rows:
        if row.get("answer") is not None and row.get("helpfulness_score") is not None:
            key = json.dumps(row["prompt"], sort_keys=True)
            by_prompt.setdefault(key, {"context": row["prompt"], "answers": {}})[
                "answers"][row["variant"]] = (row["answer"], row["helpfulness_score"])
    agree = compared = 0
    per_strength = {s: [0, 0] for s in STRENGTHS}
    for item in by_prompt.values():
        names = [v for v in variants if v in item["answers"]]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (text_a, rm_a), (text_b, rm_b) = item["answers"][a], item["answers"][b]
                pref_a, pref_b = model.score(item["context"], text_a), model.score(item["context"], text_b)
                if pref_a != pref_b and rm_a != rm_b:
                    compared += 1
                    agree += (pref_a > pref_b) == (rm_a > rm_b)
                judged = model.judge(context=item["context"], response_a=text_a, response_b=text_b,
                                     focus="helpfulness", rng=rng)
                if judged.choice is None or rm_a == rm_b:
                    continue
                correct = (rm_a > rm_b) == (judged.choice == "A")
                per_strength[judged.payload["strength"]][0] += correct
                per_strength[judged.payload["strength"]][1] += 1
    total_right = sum(right for right, _ in per_strength.values())
    total = sum(n for _, n in per_strength.values())
    return {
        "pairs": compared,
        "agreement_with_preference": round(agree / compared, 4) if compared else None,
        "agreement_ci95": interval(agree, compared),
        "accuracy_per_strength": {s: {"accuracy": round(r / n, 4) if n else None, "pairs": n}
                                  for s, (r, n) in per_strength.items()},
        "accuracy": round(total_right / total, 4) if total else None,
    }


def verdict(rows: list[dict], *, model: PreferenceModel, new: str, start: str, rng: random.Random) -> dict:
    """The new variant against the starting one on the held-out prompts, as the preference function
    judges them (sides drawn at random; ties count half)."""
    answers: dict[str, dict[str, str]] = {}
    contexts: dict[str, list] = {}
    for row in rows:
        key = json.dumps(row["prompt"], sort_keys=True)
        contexts[key] = row["prompt"]
        if row.get("answer") is not None:
            answers.setdefault(key, {})[row["variant"]] = row["answer"]
    wins = noiseless = 0.0
    scores = {new: [], start: []}
    lengths = {new: [], start: []}
    n = 0
    for key, by_variant in answers.items():
        if new not in by_variant or start not in by_variant:
            continue
        n += 1
        context = contexts[key]
        for name in (new, start):
            scores[name].append(model.score(context, by_variant[name]))
            lengths[name].append(len(by_variant[name]))
        gap = scores[new][-1] - scores[start][-1]
        noiseless += 1.0 if gap > 0 else 0.5 if gap == 0 else 0.0
        new_side = rng.choice("AB")
        sides = {new_side: by_variant[new], ("B" if new_side == "A" else "A"): by_variant[start]}
        judged = model.judge(context=context, response_a=sides["A"], response_b=sides["B"], focus="helpfulness",
                             rng=rng)
        wins += 0.5 if judged.choice is None else float(judged.choice == new_side)
    mean = {name: round(statistics.fmean(values), 4) if values else None for name, values in scores.items()}
    mean_length = {name: round(statistics.fmean(values), 1) if values else None for name, values in lengths.items()}
    return {
        "prompts": n,
        "win_rate": round(wins / n, 4) if n else None,
        "win_rate_ci95": interval(wins, n),
        "win_rate_noiseless": round(noiseless / n, 4) if n else None,
        "win_rate_noiseless_ci95": interval(noiseless, n),
        "mean_preference": mean,
        "mean_length_chars": mean_length,
        "length_drift": (round(mean_length[new] / mean_length[start], 4)
                         if mean_length[new] is not None and mean_length[start] else None),
    }


def read_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- The loop ---------------------------------------------------------------------------------


@dataclass
class Options:
    url: str
    admin: tuple[str, str]
    researcher: tuple[str, str]
    profile: Profile
    preference: str
    prompts: tuple[str, ...]
    annotator_prefix: str
    annotator_password: str
    create_annotators: bool
    start_variant: str = ""
    base: str = ""
    ppo: bool = False
    seed: int = 0
    out: Path | None = None


def run_loop(options: Options, log=print) -> dict:
    """The whole loop; returns the figures (also written to options.out when given)."""
    profile = options.profile
    started = time.monotonic()
    timings: dict[str, float] = {}
    step_started = [time.monotonic()]

    def step_done(name: str) -> None:
        timings[name] = round(time.monotonic() - step_started[0], 1)
        step_started[0] = time.monotonic()

    model = PreferenceModel(preference=load_callable(options.preference), noise=profile.noise,
                            thresholds=profile.thresholds)
    train_prompts, held_out = split_prompts(options.prompts, held_out=profile.held_out_prompts,
                                            train=profile.train_prompts, seed=options.seed)
    admin = Tandem(options.url, *options.admin)
    researcher = Tandem(options.url, *options.researcher)
    variants = admin.every("/api/variants/")
    active = sorted((v for v in variants if v["is_active"]), key=lambda v: v["name"])
    if len(active) < 1:
        raise BenchError("No active policy variant: round 0 has nothing to sample from.")
    start = options.start_variant or active[0]["name"]
    if start not in {v["name"] for v in active}:
        raise BenchError(f"The starting variant {start!r} is not an active variant "
                         f"({', '.join(v['name'] for v in active)}).")
    tag = time.strftime("%m%d%H%M%S")
    figures: dict = {
        "profile": {**asdict(profile), "preference": options.preference}, "url": options.url,
        "start_variant": start, "round0_variants": [v["name"] for v in active],
        "prompts": {"train": len(train_prompts), "held_out": len(held_out)}, "seed": options.seed,
    }
    log(f"Profile {profile.name}: N={profile.judgements} judgements by {profile.annotators} annotators on "
        f"{len(train_prompts)} prompts, {len(held_out)} held out; K={profile.k}; answers ≤ {profile.max_new_tokens} "
        f"tokens; preference {options.preference} (noise {profile.noise}, thresholds {profile.thresholds}).")
    log(f"Round-0 variants: {', '.join(v['name'] for v in active)}; the policy round samples from {start!r}.")

    saved = {v["id"]: {"max_new_tokens": v["max_new_tokens"]} for v in active}
    served: list[int] = []
    try:
        for variant in active:
            admin.call("PATCH", f"/api/variants/{variant['id']}/", json={"max_new_tokens": profile.max_new_tokens})

        # Round 0: judgements.
        usernames = annotator_accounts(admin, count=profile.annotators, password=options.annotator_password,
                                       prefix=options.annotator_prefix, create=options.create_annotators)
        simulation = SimulationConfig(
            base_url=options.url, usernames=usernames, password=options.annotator_password, model=model,
            prompts=tuple(train_prompts), dialogues=math.ceil(profile.judgements / profile.annotators), turns=1,
            focus="helpfulness", seed=options.seed, timeout=600, retries=2)
        summary = run_simulation(simulation)
        for line in summary.lines():
            log("  " + line)
        figures["round0"] = {"stored": summary.total("stored"), "failures": len(summary.failures),
                             "agreement_with_preference": (round(summary.total("agreeing") / summary.total("compared"), 4)
                                                           if summary.total("compared") else None),
                             "seconds": round(summary.elapsed, 1)}
        if summary.total("stored") < profile.judgements // 2:
            raise BenchError(f"Round 0 stored {summary.total('stored')} of {profile.judgements} judgements: "
                             + "; ".join(summary.failures[:3]))
        step_done("round0")

        # Freeze the batch that holds them (the current week: an early freeze, forced).
        batches = [b for b in admin.every("/api/batches/") if b["status"] == "open"]
        if not batches:
            raise BenchError("No open batch holds the round-0 judgements.")
        batch = max(batches, key=lambda b: (b["iso_year"], b["iso_week"], b["label"]))["label"]
        frozen = admin.json("POST", f"/api/batches/{batch}/freeze/", json={"force": True})
        figures["batch"] = {"label": batch, "summary": frozen.get("summary")}
        log(f"Froze {batch}: {frozen.get('summary', {}).get('judgements', '?')} judgements.")
        step_done("freeze")

        # The reward model.
        launch = {"focus": "helpfulness", "batches": [batch], "name": f"loop-rm-{tag}", "seed": options.seed,
                  **profile.reward}
        if options.base:
            launch["base"] = options.base
        rm_run = researcher.json("POST", "/api/training/runs/", expect=(201,), json=launch)
        log(f"Reward model: run {rm_run['id']} launched.")
        rm_run = wait_for_run(researcher, rm_run["id"], what="reward model", timeout=profile.timeout, log=log)
        checkpoints = {c["name"]: c for c in researcher.every("/api/training/checkpoints/")}
        reward_model = checkpoints[rm_run["checkpoint"]]
        figures["reward_model"] = {"run": rm_run["id"], "checkpoint": reward_model["name"],
                                   "train": (rm_run["summary"] or {}).get("done"),
                                   "held_out": held_out_accuracy(reward_model.get("evaluation") or {})}
        step_done("reward_model")

        # The policy round: rejection sampling from the starting variant, served as a new variant.
        rs = {"kind": "rejection_sampling", "batches": [batch], "variant": start,
              "helpfulness_rm": reward_model["name"], "name": f"loop-rs-{tag}",
              "settings": {"k": profile.k, "temperature": profile.rs_temperature,
                           "max_tokens": profile.max_new_tokens, "seed": options.seed, **profile.policy}}
        if options.base:
            rs["base"] = options.base
        rs_run = researcher.json("POST", "/api/training/policy-runs/", expect=(201,), json=rs)
        log(f"Rejection sampling: run {rs_run['id']} launched.")
        rs_run = wait_for_run(researcher, rs_run["id"], what="rejection sampling", timeout=profile.timeout, log=log)
        done = (rs_run["summary"] or {}).get("done") or {}
        figures["rejection_sampling"] = {"run": rs_run["id"], "checkpoint": rs_run["checkpoint"],
                                         **{k: done.get(k) for k in ("prompts", "samples", "kept", "mean_gain",
                                                                     "mean_max_reward", "mean_median_reward")}}
        step_done("rejection_sampling")
        start_settings = next(v for v in active if v["name"] == start)
        new_name = f"rs-{tag}"
        policies = {"rejection_sampling": (rs_run["checkpoint"], new_name)}

        if options.ppo:
            ppo = {"kind": "ppo", "batches": [batch], "helpfulness_rm": reward_model["name"], "name": f"loop-ppo-{tag}",
                   "settings": {"seed": options.seed, **profile.ppo}}
            if options.base:
                ppo["base"] = options.base
            ppo_run = researcher.json("POST", "/api/training/policy-runs/", expect=(201,), json=ppo)
            log(f"PPO: run {ppo_run['id']} launched.")
            ppo_run = wait_for_run(researcher, ppo_run["id"], what="PPO", timeout=profile.timeout, log=log)
            figures["ppo"] = {"run": ppo_run["id"], "checkpoint": ppo_run["checkpoint"]}
            policies["ppo"] = (ppo_run["checkpoint"], f"ppo-{tag}")
            step_done("ppo")

        checkpoints = {c["name"]: c for c in researcher.every("/api/training/checkpoints/")}
        for kind, (checkpoint_name, variant_name) in policies.items():
            variant = researcher.json("POST", f"/api/training/checkpoints/{checkpoints[checkpoint_name]['id']}/serve/",
                                      expect=(201,), json={
                                          "name": variant_name, "temperature_min": start_settings["temperature_min"],
                                          "temperature_max": start_settings["temperature_max"],
                                          "max_new_tokens": profile.max_new_tokens})
            served.append(variant["id"])
            log(f"Serving {checkpoint_name} as variant {variant_name}.")
        # A local model server loads its model after the request returned: its variant turns active
        # once it answers.
        deadline = time.monotonic() + profile.timeout
        while not all(v["is_active"] for v in admin.every("/api/variants/") if v["id"] in served):
            if time.monotonic() > deadline:
                raise BenchError("A served checkpoint's model server did not answer in time.")
            time.sleep(1)
        step_done("serve")

        # The verdict: every variant answers the held-out prompts; the new RM scores every answer.
        compared = [v["name"] for v in active] + [name for _, name in policies.values()]
        evaluation_run = researcher.json("POST", "/api/training/policy-runs/", expect=(201,), json={
            "kind": "policy_eval", "batches": [batch], "variants": compared, "helpfulness_rm": reward_model["name"],
            "prompts": held_out, "name": f"loop-verdict-{tag}",
            "settings": {"temperature": profile.eval_temperature, "max_tokens": profile.max_new_tokens,
                         "seed": options.seed}, **({"base": options.base} if options.base else {})})
        evaluation_run = wait_for_run(researcher, evaluation_run["id"], what="held-out evaluation",
                                      timeout=profile.timeout, log=log)
        rows = read_lines(researcher.call(
            "GET", f"/api/training/runs/{evaluation_run['id']}/files/samples.jsonl").text)
        rng = random.Random(options.seed)
        original = [v["name"] for v in active]
        figures["reward_model"]["fresh_pairs"] = rm_agreement(rows, model=model, variants=original, rng=rng)
        figures["verdict"] = {kind: verdict(rows, model=model, new=name, start=start, rng=rng)
                              for kind, (_, name) in policies.items()}
        figures["verdict_rm_win_rate"] = evaluation_run["summary"].get("evaluation", {}).get("win_rate")
        step_done("verdict")

        # A short round of judgements with every variant active, and the human-vote leaderboard.
        short = replace(simulation, prompts=tuple(held_out), seed=options.seed + 1,
                        dialogues=math.ceil(profile.verdict_judgements / profile.annotators))
        summary = run_simulation(short)
        figures["verdict_round"] = {"stored": summary.total("stored"), "failures": len(summary.failures)}
        figures["leaderboard"] = researcher.json("GET", "/api/training/leaderboard/")
        step_done("leaderboard")
    finally:
        for variant_id, settings in saved.items():
            admin.call("PATCH", f"/api/variants/{variant_id}/", json=settings)
    figures["seconds"] = {**timings, "total": round(time.monotonic() - started, 1)}
    if options.out:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


def table(figures: dict) -> list[str]:
    """The results as one plain-text table."""
    def pct(value):
        return "–" if value is None else f"{100 * value:.1f} %"

    def ci(values):
        return "" if not values else f" [{100 * values[0]:.1f}–{100 * values[1]:.1f}]"

    profile = figures["profile"]
    rm = figures["reward_model"]
    held = rm["held_out"]
    fresh = rm["fresh_pairs"]
    rows = [
        ("profile", f"{profile['name']}: N={profile['judgements']}, K={profile['k']}, "
                    f"≤{profile['max_new_tokens']} tokens, {figures['prompts']['train']} train / "
                    f"{figures['prompts']['held_out']} held-out prompts"),
        ("preference", f"{profile['preference']} (noise {profile['noise']})"),
        ("round 0", f"{figures['round0']['stored']} judgements stored, annotators agree with the preference "
                    f"{pct(figures['round0']['agreement_with_preference'])}"),
        ("batch", f"{figures['batch']['label']} (frozen early)"),
        ("RM held-out split", f"{pct(held.get('accuracy'))} of {held.get('pairs')} pairs"),
    ]
    for strength in STRENGTHS:
        entry = (held.get("accuracy_per_strength") or {}).get(strength) or {}
        fresh_entry = fresh["accuracy_per_strength"].get(strength) or {}
        rows.append((f"  {strength.replace('_', ' ')}",
                     f"held-out {pct(entry.get('accuracy'))} ({entry.get('pairs', 0)}) · fresh "
                     f"{pct(fresh_entry.get('accuracy'))} ({fresh_entry.get('pairs', 0)})"))
    rows.append(("RM on fresh pairs", f"agrees with the preference on {pct(fresh['agreement_with_preference'])}"
                                      f"{ci(fresh['agreement_ci95'])} of {fresh['pairs']} pairs"))
    for kind, result in figures["verdict"].items():
        rows += [
            (f"{kind} vs start", f"wins {pct(result['win_rate'])}{ci(result['win_rate_ci95'])} of "
                                 f"{result['prompts']} held-out prompts (noiseless {pct(result['win_rate_noiseless'])}"
                                 f"{ci(result['win_rate_noiseless_ci95'])})"),
            ("  mean preference", " vs ".join(f"{name} {value}" for name, value in result["mean_preference"].items())),
            ("  length drift", f"{result['length_drift']}× mean characters "
                               + " vs ".join(f"{k} {v}" for k, v in result["mean_length_chars"].items())),
        ]
    for row in figures["leaderboard"].get("leaderboard", []):
        rows.append((f"leaderboard #{row.get('rank_in_group', '')}", f"{row['variant']} score {row['score']} "
                     f"(group {row.get('group')}, {row['wins']}/{row['comparisons']} wins)"))
    rows.append(("time", ", ".join(f"{k} {v:.0f} s" for k, v in figures["seconds"].items())))
    width = max(len(name) for name, _ in rows)
    return [f"{name.ljust(width)}  {value}" for name, value in rows]


def parse_credentials(value: str) -> tuple[str, str]:
    name, _, password = value.partition(":")
    if not name or not password:
        raise argparse.ArgumentTypeError("give USER:PASSWORD")
    return name, password


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:8000", help="A running Tandem.")
    parser.add_argument("--admin", type=parse_credentials, default=("demo-admin", "freeze-batches-42"))
    parser.add_argument("--researcher", type=parse_credentials, default=("demo-researcher", "train-models-42"))
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--preference", default=None, help="Dotted path of (context, response) -> float "
                                                           "(default: the profile's).")
    parser.add_argument("--noise", type=float, default=None, help="Std-dev of the annotators' score noise.")
    parser.add_argument("--thresholds", default=None, help="Score gaps of significantly better, better, "
                                                           "slightly better (a,b,c).")
    parser.add_argument("--judgements", type=int, default=None, help="N: round-0 judgements.")
    parser.add_argument("--k", type=int, default=None, help="Rejection-sampling samples per prompt.")
    parser.add_argument("--prompts", default=None, help="One prompt per line (default: bench/data/loop_prompts.txt).")
    parser.add_argument("--start-variant", default="", help="The variant the policy round samples from "
                                                            "(default: the first active one by name).")
    parser.add_argument("--base", default="", help="Checkpoint the RM and the policy start from "
                                                   "(default: the server's default base model).")
    parser.add_argument("--annotator-prefix", default="loop-annotator")
    parser.add_argument("--annotator-password", default=DEFAULT_PASSWORD)
    parser.add_argument("--create-annotators", action="store_true",
                        help="Create the annotator accounts through invitations (admin API).")
    parser.add_argument("--ppo", action="store_true", help="Also a PPO round from the same RM, judged the same way.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures "
                                                                "(default: var/bench/loop-efficacy-<profile>.json).")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    changes = {}
    if args.noise is not None:
        changes["noise"] = args.noise
    if args.thresholds is not None:
        from annotation.simulation import parse_thresholds

        changes["thresholds"] = parse_thresholds(args.thresholds)
    if args.judgements is not None:
        changes["judgements"] = args.judgements
    if args.k is not None:
        changes["k"] = args.k
    profile = replace(profile, **changes)
    return Options(
        url=args.url, admin=args.admin, researcher=args.researcher, profile=profile,
        preference=args.preference or profile.preference,
        prompts=read_prompts(args.prompts or PROMPTS_FILE), annotator_prefix=args.annotator_prefix,
        annotator_password=args.annotator_password, create_annotators=args.create_annotators,
        start_variant=args.start_variant, base=args.base, ppo=args.ppo, seed=args.seed,
        out=args.out or ROOT / "var" / "bench" / f"loop-efficacy-{profile.name}.json")


def main(argv: list[str] | None = None) -> int:
    try:
        options = parse_args(argv)
        figures = run_loop(options)
    except BenchError as error:
        print(f"loop_efficacy: {error}", file=sys.stderr)
        return 1
    print()
    for line in table(figures):
        print(line)
    print(f"\nFigures written to {options.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
