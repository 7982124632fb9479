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
   With --policy rs,dpo,rloo (any of rs, dpo, rloo, ppo), each of those rounds from the same
   round-0 batch and reward model (DPO trains on the batch's pairs directly), judged side by side.
4. Verdict. A model-based evaluation run has every variant answer the held-out prompts (one
   temperature for all) and the new RM score every answer. From its samples: the RM's agreement
   with the preference function on these fresh pairs (and its accuracy per strength as the
   simulated annotators would label them); the new variant against the starting one as the
   preference function judges them (sides drawn at random), with a Wilson 95 % interval, the
   mean preference scores and the length drift. Then a short round of simulated judgements with
   every variant active, and the human-vote Bradley–Terry leaderboard.

It prints one table and writes every figure as JSON. The steps are bench/loop_steps.py's.

    .venv/bin/python bench/loop_efficacy.py --profile cpu            # against `make run`
    .venv/bin/python bench/loop_efficacy.py --profile gpu --url https://tandem.example.org \\
        --admin alice:… --researcher rob:… --annotator-password … --create-annotators

The variants' sampling settings (max new tokens) are set for the profile during the run and put
back at the end. Run it on a stack you can spare: it adds judgements, freezes the current week's
batch early and serves new variants.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from annotation.workspace.simulation import read_prompts  # noqa: E402  (Django-free: the annotators are HTTP clients)
from bench.loop_figures import table  # noqa: E402
from bench.loop_profiles import PROFILES, read_taste  # noqa: E402
from bench.loop_steps import STEPS, Loop, Options  # noqa: E402
from bench.tandem_api import BenchError  # noqa: E402

PROMPTS_FILE = ROOT / "bench" / "data" / "loop_prompts.txt"
DEFAULT_PASSWORD = "tandem-loop-bench-pw-7"


def run_loop(options: Options, log=print) -> dict:
    """The whole loop, step by step (STEPS); returns the figures (also written to options.out when
    given). The variants' settings the run changed are put back whatever happens."""
    loop = Loop(options, log=log)
    try:
        for step in STEPS:
            getattr(loop, step)()
    finally:
        loop.restore()
    figures = {**loop.figures, "seconds": {**loop.timings, "total": round(time.monotonic() - loop.started, 1)}}
    if options.out:
        options.out.parent.mkdir(parents=True, exist_ok=True)
        options.out.write_text(json.dumps(figures, indent=2) + "\n")
    return figures


POLICIES = ("rs", "dpo", "rloo", "ppo")


def parse_policies(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(item.strip() for item in value.split(",") if item.strip()))
    unknown = [item for item in chosen if item not in POLICIES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(f"use some of {', '.join(POLICIES)}, comma separated (not {value!r})")
    return chosen


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
    parser.add_argument("--taste", default=None, help="A taste bundle (JSON: preference, prompts, prompt_suffix, "
                                                      "thresholds, noise; bench/tastes/README.md); the flags below "
                                                      "win over it, it wins over the profile.")
    parser.add_argument("--preference", default=None, help="Dotted path (or file.py:name) of (context, response) -> "
                                                           "float (default: the profile's).")
    parser.add_argument("--prompt-suffix", default=None, help="Added to every prompt (default: the profile's, e.g. "
                                                              "the cpu profile's ' Answer in one or two sentences.').")
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
    parser.add_argument("--policy", type=parse_policies, default=("rs",),
                        help=f"The policy rounds, comma separated, from one round 0 and RM: {', '.join(POLICIES)} "
                             "(default rs).")
    parser.add_argument("--ppo", action="store_true", help="Also a PPO round (as --policy …,ppo).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", default="", help="Start at the reward model from this frozen batch (an earlier "
                                                    "run's round 0, e.g. after the stack stopped); same --seed.")
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the figures "
                                                                "(default: var/bench/loop-efficacy-<profile>.json).")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    from annotation.workspace.simulation import SimulationError, parse_thresholds

    try:
        taste = read_taste(args.taste) if args.taste else {}
        changes = {key: taste[key] for key in ("noise", "thresholds", "prompt_suffix") if key in taste}
        if args.thresholds is not None:
            changes["thresholds"] = parse_thresholds(args.thresholds)
        prompts = read_prompts(args.prompts or taste.get("prompts") or PROMPTS_FILE)
    except SimulationError as error:
        parser.error(str(error))
    if args.noise is not None:
        changes["noise"] = args.noise
    if args.prompt_suffix is not None:
        changes["prompt_suffix"] = args.prompt_suffix
    if args.judgements is not None:
        changes["judgements"] = args.judgements
    if args.k is not None:
        changes["k"] = args.k
    profile = replace(profile, **changes)
    return Options(
        url=args.url, admin=args.admin, researcher=args.researcher, profile=profile,
        preference=args.preference or taste.get("preference") or profile.preference,
        prompts=prompts, annotator_prefix=args.annotator_prefix,
        annotator_password=args.annotator_password, create_annotators=args.create_annotators,
        start_variant=args.start_variant, base=args.base,
        policies=args.policy + (("ppo",) if args.ppo and "ppo" not in args.policy else ()), seed=args.seed,
        batch=args.batch,
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
