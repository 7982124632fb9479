"""The loop's steps (bench/loop_efficacy.py runs them in order, STEPS): each one a call or two to
Tandem's API, reading what the steps before it left on the Loop and adding its figures."""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from annotation.workspace.simulation import PreferenceModel, SimulationConfig, load_callable, run_simulation
from bench.loop_figures import held_out_accuracy, judged, read_lines
from bench.loop_profiles import Profile
from bench.tandem_api import BenchError, Tandem, annotator_accounts, wait_for_run

# --- Prompts ----------------------------------------------------------------------------------


def split_prompts(prompts: tuple[str, ...], *, held_out: int, train: int, seed: int) -> tuple[list, list]:
    """Disjoint (training, held-out) prompt lists, drawn by a seeded hash of each prompt."""
    unique = list(dict.fromkeys(prompts))
    ranked = sorted(unique, key=lambda p: hashlib.sha256(f"{seed}:{p}".encode()).hexdigest())
    if len(ranked) < held_out + 2:
        raise BenchError(f"{len(ranked)} distinct prompts: need at least {held_out + 2} "
                         f"({held_out} held out for the verdict and some to train on).")
    return ranked[held_out:held_out + train], ranked[:held_out]



# --- The loop ---------------------------------------------------------------------------------


def reused_batch(admin: Tandem, label: str) -> dict:
    """A frozen batch to start from (``--batch``): an earlier run's round 0."""
    found = next((b for b in admin.every("/api/batches/") if b["label"] == label), None)
    if found is None or found["status"] != "frozen":
        raise BenchError(f"--batch {label}: no frozen batch of that label.")
    return found


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
    policies: tuple[str, ...] = ("rs",)  # the policy rounds, each from the same round-0 batch and RM
    seed: int = 0
    batch: str = ""  # a frozen batch of an earlier run's round 0: start at the reward model
    out: Path | None = None


class Loop:
    """One run of the loop, as the named steps ``run_loop`` takes in order. Each step reads what the
    ones before it left on the instance, adds its figures and records its seconds."""

    def __init__(self, options: Options, log=print):
        self.options, self.profile, self.log = options, options.profile, log
        self.started = self._step_started = time.monotonic()
        self.timings: dict[str, float] = {}
        self.model = PreferenceModel(preference=load_callable(options.preference), noise=self.profile.noise,
                                     thresholds=self.profile.thresholds)
        train, held_out = split_prompts(options.prompts, held_out=self.profile.held_out_prompts,
                                        train=self.profile.train_prompts, seed=options.seed)
        self.train_prompts = [prompt + self.profile.prompt_suffix for prompt in train]
        self.held_out = [prompt + self.profile.prompt_suffix for prompt in held_out]
        self.admin = Tandem(options.url, *options.admin)
        self.researcher = Tandem(options.url, *options.researcher)
        self.tag = time.strftime("%m%d%H%M%S")
        self.figures: dict = {}
        self.active: list[dict] = []
        self.start = ""
        self.simulation: SimulationConfig | None = None
        self.batch = ""
        self.reward_model: dict = {}
        self.policies: dict[str, tuple[str, str]] = {}  # kind → (checkpoint, served variant name)
        self.saved: dict[int, dict] = {}  # the variants' settings the run changes, put back at the end

    def _done(self, step: str) -> None:
        self.timings[step] = round(time.monotonic() - self._step_started, 1)
        self._step_started = time.monotonic()

    def _launch(self, path: str, body: dict, *, what: str) -> dict:
        """A run launched through the researchers' API (from ``--base`` when given), awaited."""
        if self.options.base:
            body = {**body, "base": self.options.base}
        run = self.researcher.json("POST", path, expect=(201,), json=body)
        self.log(f"{what[0].upper()}{what[1:]}: run {run['id']} launched.")
        return wait_for_run(self.researcher, run["id"], what=what, timeout=self.profile.timeout, log=self.log)

    def variants_chosen(self) -> None:
        """The round-0 variants (the active ones), the one the policy round samples from, and their
        answer length set for the profile."""
        options, profile = self.options, self.profile
        self.active = sorted((v for v in self.admin.every("/api/variants/") if v["is_active"]),
                             key=lambda v: v["name"])
        if not self.active:
            raise BenchError("No active policy variant: round 0 has nothing to sample from.")
        self.start = options.start_variant or self.active[0]["name"]
        if self.start not in {v["name"] for v in self.active}:
            raise BenchError(f"The starting variant {self.start!r} is not an active variant "
                             f"({', '.join(v['name'] for v in self.active)}).")
        self.figures = {
            "profile": {**asdict(profile), "preference": options.preference}, "url": options.url,
            "start_variant": self.start, "round0_variants": [v["name"] for v in self.active],
            "prompts": {"train": len(self.train_prompts), "held_out": len(self.held_out)}, "seed": options.seed,
        }
        self.log(f"Profile {profile.name}: N={profile.judgements} judgements by {profile.annotators} annotators on "
                 f"{len(self.train_prompts)} prompts, {len(self.held_out)} held out; K={profile.k}; answers ≤ "
                 f"{profile.max_new_tokens} tokens; preference {options.preference} (noise {profile.noise}, "
                 f"thresholds {profile.thresholds})"
                 + (f"; every prompt ends {profile.prompt_suffix.strip()!r}." if profile.prompt_suffix else "."))
        self.log(f"Round-0 variants: {', '.join(v['name'] for v in self.active)}; the policy round samples "
                 f"from {self.start!r}.")
        self.saved = {v["id"]: {"max_new_tokens": v["max_new_tokens"]} for v in self.active}
        for variant in self.active:
            self.admin.call("PATCH", f"/api/variants/{variant['id']}/",
                            json={"max_new_tokens": profile.max_new_tokens})

    def round0(self) -> None:
        """Simulated annotators judge N pairs on the training prompts (or ``--batch`` names an earlier
        run's, frozen)."""
        options, profile = self.options, self.profile
        usernames = annotator_accounts(self.admin, count=profile.annotators, password=options.annotator_password,
                                       prefix=options.annotator_prefix, create=options.create_annotators)
        self.simulation = SimulationConfig(
            base_url=options.url, usernames=usernames, password=options.annotator_password, model=self.model,
            prompts=tuple(self.train_prompts), dialogues=math.ceil(profile.judgements / profile.annotators), turns=1,
            focus="helpfulness", seed=options.seed, timeout=600, retries=2)
        if options.batch:
            found = reused_batch(self.admin, options.batch)
            self.batch = found["label"]
            self.figures["round0"] = {"reused_batch": self.batch, "stored": found["summary"].get("judgements")}
            self.figures["batch"] = {"label": self.batch, "summary": found["summary"]}
            self.log(f"Round 0: the judgements of frozen batch {self.batch} ({found['summary'].get('judgements')}).")
            return
        summary = run_simulation(self.simulation)
        for line in summary.lines():
            self.log("  " + line)
        compared = summary.total("compared")
        self.figures["round0"] = {
            "stored": summary.total("stored"), "failures": len(summary.failures),
            "agreement_with_preference": round(summary.total("agreeing") / compared, 4) if compared else None,
            "seconds": round(summary.elapsed, 1)}
        if summary.total("stored") < profile.judgements // 2:
            raise BenchError(f"Round 0 stored {summary.total('stored')} of {profile.judgements} judgements: "
                             + "; ".join(summary.failures[:3]))
        self._done("round0")

    def freeze(self) -> None:
        """The batch that holds round 0 is frozen (the current week: an early freeze, forced)."""
        if self.options.batch:
            return
        batches = [b for b in self.admin.every("/api/batches/") if b["status"] == "open"]
        if not batches:
            raise BenchError("No open batch holds the round-0 judgements.")
        self.batch = max(batches, key=lambda b: (b["iso_year"], b["iso_week"], b["label"]))["label"]
        frozen = self.admin.json("POST", f"/api/batches/{self.batch}/freeze/", json={"force": True})
        self.figures["batch"] = {"label": self.batch, "summary": frozen.get("summary")}
        self.log(f"Froze {self.batch}: {frozen.get('summary', {}).get('judgements', '?')} judgements.")
        self._done("freeze")

    def reward_model_trained(self) -> None:
        """A helpfulness reward model on the batch, and its held-out accuracy per strength."""
        run = self._launch("/api/training/runs/", {
            "focus": "helpfulness", "batches": [self.batch], "name": f"loop-rm-{self.tag}",
            "settings": {"seed": self.options.seed, **self.profile.reward}}, what="reward model")
        checkpoints = {c["name"]: c for c in self.researcher.every("/api/training/checkpoints/")}
        self.reward_model = checkpoints[run["checkpoint"]]
        self.figures["reward_model"] = {"run": run["id"], "checkpoint": self.reward_model["name"],
                                        "train": (run["summary"] or {}).get("done"),
                                        "held_out": held_out_accuracy(self.reward_model.get("evaluation") or {})}
        self._done("reward_model")

    def _policy_round(self, option: str, kind: str, body: dict, *, what: str, figures=lambda run: {}) -> None:
        """One of the `--policy` rounds (``option``), run ``kind`` on this loop's batch, awaited; its
        checkpoint is served later as the variant `<option>-<tag>`. ``figures(run)``: what it adds."""
        if option not in self.options.policies:
            return
        run = self._launch("/api/training/policy-runs/", {
            "kind": kind, "batches": [self.batch], "name": f"loop-{option}-{self.tag}", **body}, what=what)
        self.figures[kind] = {"run": run["id"], "checkpoint": run["checkpoint"], **figures(run)}
        self.policies[kind] = (run["checkpoint"], f"{option}-{self.tag}")
        self._done(kind)

    def rejection_sampling(self) -> None:
        """K samples per training prompt from the starting variant; the new RM keeps the best; SFT."""
        profile = self.profile
        self._policy_round("rs", "rejection_sampling", {
            "variant": self.start, "helpfulness_rm": self.reward_model["name"],
            "settings": {"k": profile.k, "temperature": profile.rs_temperature,
                         "max_new_tokens": profile.max_new_tokens, "seed": self.options.seed, **profile.policy}},
            what="rejection sampling", figures=lambda run: {
                k: ((run["summary"] or {}).get("done") or {}).get(k)
                for k in ("prompts", "samples", "kept", "mean_gain", "mean_max_reward", "mean_median_reward")})

    def ppo(self) -> None:
        """A PPO round from the same reward model (`--policy …,ppo`)."""
        self._policy_round("ppo", "ppo", {
            "helpfulness_rm": self.reward_model["name"], "settings": {"seed": self.options.seed, **self.profile.ppo}},
            what="PPO")

    def dpo(self) -> None:
        """A DPO round straight on round 0's helpfulness pairs (`--policy …,dpo`): no reward model."""
        def held_out(run):
            found = ((run["summary"] or {}).get("job") or {}).get("held_out") or {}
            return {"held_out_accuracy": found.get("accuracy"), "held_out_margin": found.get("margin")}

        self._policy_round("dpo", "dpo", {"focus": "helpfulness",
                                          "settings": {"seed": self.options.seed, **self.profile.dpo}},
                           what="DPO", figures=held_out)

    def rloo(self) -> None:
        """An online-RL round (RLOO) on the same reward model (`--policy …,rloo`)."""
        self._policy_round("rloo", "rloo", {
            "helpfulness_rm": self.reward_model["name"],
            "settings": {"seed": self.options.seed, "max_new_tokens": self.profile.max_new_tokens,
                         **self.profile.rloo}},
            what="online RL (RLOO)", figures=lambda run: {
                k: ((run["summary"] or {}).get("job") or {}).get(k)
                for k in ("steps", "first_raw_reward", "last_raw_reward", "last_kl")})

    def served(self) -> None:
        """Each new checkpoint served as a variant with the starting one's temperatures; a local model
        server loads its model after the request returned, so its variant turns active once it answers."""
        start = next(v for v in self.active if v["name"] == self.start)
        checkpoints = {c["name"]: c for c in self.researcher.every("/api/training/checkpoints/")}
        served = []
        for checkpoint_name, variant_name in self.policies.values():
            variant = self.researcher.json(
                "POST", f"/api/training/checkpoints/{checkpoints[checkpoint_name]['id']}/serve/", expect=(201,),
                json={"name": variant_name, "temperature_min": start["temperature_min"],
                      "temperature_max": start["temperature_max"], "max_new_tokens": self.profile.max_new_tokens})
            served.append(variant["id"])
            self.log(f"Serving {checkpoint_name} as variant {variant_name}.")
        deadline = time.monotonic() + self.profile.timeout
        while not all(v["is_active"] for v in self.admin.every("/api/variants/") if v["id"] in served):
            if time.monotonic() > deadline:
                raise BenchError("A served checkpoint's model server did not answer in time.")
            time.sleep(1)
        self._done("serve")

    def verdict(self) -> None:
        """Every variant answers the held-out prompts and the new RM scores every answer; the
        preference function judges the new variant against the starting one on them."""
        options = self.options
        compared = [v["name"] for v in self.active] + [name for _, name in self.policies.values()]
        run = self._launch("/api/training/policy-runs/", {
            "kind": "policy_eval", "batches": [self.batch], "variants": compared,
            "helpfulness_rm": self.reward_model["name"], "prompts": self.held_out, "name": f"loop-verdict-{self.tag}",
            "settings": {"temperature": self.profile.eval_temperature, "max_new_tokens": self.profile.max_new_tokens,
                         "seed": options.seed}}, what="held-out evaluation")
        rows = read_lines(self.researcher.call("GET", f"/api/training/runs/{run['id']}/files/samples.jsonl").text)
        found = judged(rows, model=self.model, variants=compared,
                       new={kind: name for kind, (_, name) in self.policies.items()}, start=self.start,
                       seed=options.seed)
        self.figures["reward_model"]["fresh_pairs"] = found["fresh_pairs"]
        self.figures["verdict"] = found["verdict"]
        self.figures["verdict_rm_win_rate"] = run["summary"].get("evaluation", {}).get("win_rate")
        self._done("verdict")

    def leaderboard(self) -> None:
        """A short round of judgements with every variant active, and the human-vote leaderboard."""
        short = replace(self.simulation, prompts=tuple(self.held_out), seed=self.options.seed + 1,
                        dialogues=math.ceil(self.profile.verdict_judgements / self.profile.annotators))
        summary = run_simulation(short)
        self.figures["verdict_round"] = {"stored": summary.total("stored"), "failures": len(summary.failures)}
        self.figures["leaderboard"] = self.researcher.json("GET", "/api/training/leaderboard/")
        self._done("leaderboard")

    def restore(self) -> None:
        for variant_id, settings in self.saved.items():
            self.admin.call("PATCH", f"/api/variants/{variant_id}/", json=settings)


STEPS = ("variants_chosen", "round0", "freeze", "reward_model_trained", "rejection_sampling", "ppo", "dpo", "rloo",
         "served",
         "verdict", "leaderboard")
