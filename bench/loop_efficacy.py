"""Does the loop work? Judgements made through Tandem → a reward model that learns the annotators'
taste → a rejection-sampling policy that the same taste prefers.

Against a running Tandem (the embedded `make run` stack by default, or any URL with admin and
researcher credentials), through Tandem's own API only:

1. Round 0. Simulated annotators (annotation/workspace/simulation.py, as `manage.py simulate_annotators`)
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
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from annotation.workspace.simulation import (  # noqa: E402  (Django-free: the annotators are HTTP clients)
    PreferenceModel,
    SimulationConfig,
    load_callable,
    read_prompts,
    run_simulation,
)
from bench.loop_figures import held_out_accuracy, judged, read_lines, table  # noqa: E402
from bench.loop_profiles import PROFILES, Profile  # noqa: E402
from bench.tandem_api import BenchError, Tandem, annotator_accounts, wait_for_run  # noqa: E402

PROMPTS_FILE = ROOT / "bench" / "data" / "loop_prompts.txt"
DEFAULT_PASSWORD = "tandem-loop-bench-pw-7"



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
    ppo: bool = False
    seed: int = 0
    batch: str = ""  # a frozen batch of an earlier run's round 0: start at the reward model
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
    train_prompts = [prompt + profile.prompt_suffix for prompt in train_prompts]
    held_out = [prompt + profile.prompt_suffix for prompt in held_out]
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
        f"tokens; preference {options.preference} (noise {profile.noise}, thresholds {profile.thresholds})"
        + (f"; every prompt ends {profile.prompt_suffix.strip()!r}." if profile.prompt_suffix else "."))
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
        if options.batch:  # an earlier run's round 0, frozen
            found = reused_batch(admin, options.batch)
            batch = found["label"]
            figures["round0"] = {"reused_batch": batch, "stored": found["summary"].get("judgements")}
            figures["batch"] = {"label": batch, "summary": found["summary"]}
            log(f"Round 0: the judgements of frozen batch {batch} ({found['summary'].get('judgements')}).")
        else:
            summary = run_simulation(simulation)
            for line in summary.lines():
                log("  " + line)
            figures["round0"] = {"stored": summary.total("stored"), "failures": len(summary.failures),
                                 "agreement_with_preference": (
                                     round(summary.total("agreeing") / summary.total("compared"), 4)
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
        found = judged(rows, model=model, variants=compared, new={kind: name for kind, (_, name) in policies.items()},
                       start=start, seed=options.seed)
        figures["reward_model"]["fresh_pairs"] = found["fresh_pairs"]
        figures["verdict"] = found["verdict"]
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
    parser.add_argument("--batch", default="", help="Start at the reward model from this frozen batch (an earlier "
                                                    "run's round 0, e.g. after the stack stopped); same --seed.")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures "
                                                                "(default: var/bench/loop-efficacy-<profile>.json).")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    changes = {}
    if args.noise is not None:
        changes["noise"] = args.noise
    if args.thresholds is not None:
        from annotation.workspace.simulation import parse_thresholds

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
        start_variant=args.start_variant, base=args.base, ppo=args.ppo, seed=args.seed, batch=args.batch,
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
