"""The loop benchmark's figures, computed from what Tandem's API returns: the reward model's held-out
accuracy per strength, its agreement with the preference on fresh pairs, the new policy's verdict,
and the table they are printed as."""

from __future__ import annotations

import json
import random
import statistics

from annotation.workspace.simulation import STRENGTHS, PreferenceModel
from core.statistics import wilson


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
    is labelled as a simulated annotator would label it (noise, thresholds).

    Two variants that serve one model answer an evaluation's prompt alike (one temperature, one
    seed), so identical answers are left out and counted: only the variants' differing answers are
    pairs (the new policies' against the old ones' above all)."""
    by_prompt: dict[str, dict] = {}
    for row in rows:
        if row.get("answer") is not None and row.get("helpfulness_score") is not None:
            key = json.dumps(row["prompt"], sort_keys=True)
            by_prompt.setdefault(key, {"context": row["prompt"], "answers": {}})[
                "answers"][row["variant"]] = (row["answer"], row["helpfulness_score"])
    agree = compared = identical = 0
    per_strength = {s: [0, 0] for s in STRENGTHS}
    # A length-only rule on the same labelled pairs: "the shorter answer wins" (its mirror, "the
    # longer wins", is right exactly where it is wrong, ties of length left out of both).
    shorter = {s: [0, 0] for s in STRENGTHS}
    for item in by_prompt.values():
        names = [v for v in variants if v in item["answers"]]
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (text_a, rm_a), (text_b, rm_b) = item["answers"][a], item["answers"][b]
                if text_a == text_b:
                    identical += 1
                    continue
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
                if len(text_a) != len(text_b):
                    shorter[judged.payload["strength"]][0] += (len(text_a) < len(text_b)) == (judged.choice == "A")
                    shorter[judged.payload["strength"]][1] += 1
    total_right = sum(right for right, _ in per_strength.values())
    total = sum(n for _, n in per_strength.values())
    return {
        **_length_baseline(shorter),
        "pairs": compared,
        "identical_left_out": identical,
        "agreement_with_preference": round(agree / compared, 4) if compared else None,
        "agreement_ci95": interval(agree, compared),
        "accuracy_per_strength": {s: {"accuracy": round(r / n, 4) if n else None, "pairs": n}
                                  for s, (r, n) in per_strength.items()},
        "accuracy": round(total_right / total, 4) if total else None,
    }


def _length_baseline(shorter: dict[str, list[int]]) -> dict:
    """The length-only rules' accuracy on the RM's labelled pairs: shorter wins, longer wins, and the
    better of the two per the whole set (chosen after seeing the labels: a length rule's best case).
    A reward model worth its training beats it."""
    right, n = sum(r for r, _ in shorter.values()), sum(k for _, k in shorter.values())
    rules = {"shorter_wins": right, "longer_wins": n - right}
    best = max(rules, key=rules.get)
    return {"length_baseline": {
        "pairs": n, "shorter_wins": round(right / n, 4) if n else None,
        "longer_wins": round((n - right) / n, 4) if n else None, "best_rule": best if n else None,
        "accuracy": round(rules[best] / n, 4) if n else None,
        "accuracy_per_strength": {s: {"accuracy": round((r if best == "shorter_wins" else k - r) / k, 4) if k else None,
                                      "pairs": k} for s, (r, k) in shorter.items()}}}


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


def judged(rows: list[dict], *, model: PreferenceModel, variants: list[str], new: dict[str, str], start: str,
           seed: int) -> dict:
    """What the preference function makes of an evaluation run's samples: the RM's agreement on the
    fresh pairs among ``variants`` and each new policy's verdict against ``start`` (``new``: kind →
    variant). Each draws from its own seeded stream, so one figure does not move another."""
    return {"fresh_pairs": rm_agreement(rows, model=model, variants=variants, rng=random.Random(seed)),
            "verdict": {kind: verdict(rows, model=model, new=name, start=start, rng=random.Random(seed + 1))
                        for kind, name in new.items()}}


def read_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]



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
        ("round 0", f"{figures['round0']['stored']} judgements of batch {figures['round0']['reused_batch']} (an "
                    "earlier run's round 0)" if figures["round0"].get("reused_batch") else
                    f"{figures['round0']['stored']} judgements stored, annotators agree with the preference "
                    f"{pct(figures['round0']['agreement_with_preference'])}"),
        ("batch", f"{figures['batch']['label']} (frozen early)"),
        ("RM held-out split", f"{pct(held.get('accuracy'))} of {held.get('pairs')} pairs"),
    ]
    for strength in STRENGTHS:
        entry = (held.get("accuracy_per_strength") or {}).get(strength) or {}
        fresh_entry = fresh["accuracy_per_strength"].get(strength) or {}
        length_entry = ((fresh.get("length_baseline") or {}).get("accuracy_per_strength") or {}).get(strength) or {}
        rows.append((f"  {strength.replace('_', ' ')}",
                     f"held-out {pct(entry.get('accuracy'))} ({entry.get('pairs', 0)}) · fresh "
                     f"{pct(fresh_entry.get('accuracy'))} ({fresh_entry.get('pairs', 0)}) · length rule "
                     f"{pct(length_entry.get('accuracy'))} ({length_entry.get('pairs', 0)})"))
    rows.append(("RM on fresh pairs", f"agrees with the preference on {pct(fresh['agreement_with_preference'])}"
                                      f"{ci(fresh['agreement_ci95'])} of {fresh['pairs']} pairs "
                                      f"({fresh.get('identical_left_out', 0)} identical answers left out); "
                                      f"labelled as annotators would: {pct(fresh.get('accuracy'))}"))
    if length := fresh.get("length_baseline"):
        rows.append(("  length-only rule", f"{(length['best_rule'] or '–').replace('_', ' ')}: "
                                           f"{pct(length['accuracy'])} of the same {length['pairs']} pairs with "
                                           "answers of different lengths (the better direction, chosen after the "
                                           "fact)"))
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




def main(argv: list[str] | None = None) -> None:
    """Judge a stored evaluation run's samples again (another taste, noise or seed), without
    sampling or training anything: the fresh-pair and verdict figures as JSON.

        .venv/bin/python -m bench.loop_figures var/runs/run-3/output/samples.jsonl \\
            --start cool --new rejection_sampling=rs-1130230457 --profile cpu
    """
    import argparse
    import sys
    from pathlib import Path

    from annotation.workspace.simulation import load_callable
    from bench.loop_profiles import PROFILES

    parser = argparse.ArgumentParser(description=main.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("samples", type=Path, help="An evaluation run's samples.jsonl.")
    parser.add_argument("--start", required=True, help="The starting variant.")
    parser.add_argument("--new", action="append", required=True, metavar="KIND=VARIANT")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="cpu")
    parser.add_argument("--preference", default=None)
    parser.add_argument("--noise", type=float, default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    new = dict(item.split("=", 1) for item in args.new)
    rows = read_lines(args.samples.read_text())
    variants = sorted({row["variant"] for row in rows})
    if missing := ({args.start, *new.values()} - set(variants)):
        sys.exit(f"Not in these samples: {', '.join(sorted(missing))} (they hold {', '.join(variants)}).")
    model = PreferenceModel(preference=load_callable(args.preference or profile.preference),
                            noise=profile.noise if args.noise is None else args.noise, thresholds=profile.thresholds)
    print(json.dumps(judged(rows, model=model, variants=variants, new=new, start=args.start, seed=args.seed),
                     indent=2))


if __name__ == "__main__":
    main()
