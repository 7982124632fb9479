"""Reads that the dashboard, the API and the command share."""

from __future__ import annotations

from django.db.models import QuerySet

from core.preference_scale import STRENGTHS

from .models import Checkpoint, RunMetric, TrainingRun

# The curves each kind of run draws, from its job's `log` events.
CURVES = ("loss", "accuracy", "margin", "learning_rate")
CURVES_BY_KIND = {
    TrainingRun.Kind.REWARD_MODEL: CURVES,
    TrainingRun.Kind.PPO: ("reward", "kl", "policy_loss", "value_loss", "entropy", "clip_frac"),
    TrainingRun.Kind.SFT: ("loss", "learning_rate", "grad_norm"),
    TrainingRun.Kind.REJECTION_SAMPLING: ("loss", "learning_rate", "grad_norm"),
    TrainingRun.Kind.GATT: ("loss", "learning_rate", "grad_norm"),
    TrainingRun.Kind.POLICY_EVAL: (),
    # DPO's implicit reward on the held-out pairs (the curves to read), then on the training batches.
    TrainingRun.Kind.DPO: ("eval_rewards/accuracies", "eval_rewards/margins", "loss", "rewards/accuracies",
                           "rewards/margins", "learning_rate"),
    TrainingRun.Kind.RLOO: ("raw_reward", "kl", "loss", "entropy", "completions/mean_length", "learning_rate"),
    TrainingRun.Kind.CONTEXT_DISTILLATION: ("loss", "learning_rate", "grad_norm"),
}


def runs_recent(limit: int | None = 50) -> QuerySet[TrainingRun]:
    return TrainingRun.objects.select_related("base", "launched_by", "checkpoint")[:limit]


def run_series(run: TrainingRun, names=None) -> dict[str, list[tuple[int, float]]]:
    """{metric: [(step, value), …]} from the run's stored metric lines."""
    names = CURVES_BY_KIND.get(run.kind, CURVES) if names is None else names
    series: dict[str, list[tuple[int, float]]] = {name: [] for name in names}
    for step, values in RunMetric.objects.filter(run=run).values_list("step", "values"):
        for name in names:
            value = values.get(name)
            if isinstance(value, (int, float)):
                series[name].append((step, float(value)))
    return series


def reward_curves(run: TrainingRun) -> dict:
    """A rejection-sampling run's reward curves ({temperature: {"n", "max", "median", "prompts"}}),
    as its job recorded them; empty for other runs and before the sampling ended."""
    if run.kind != TrainingRun.Kind.REJECTION_SAMPLING:
        return {}
    curves = ((run.summary or {}).get("job") or {}).get("curves") or {}
    return {str(t): c for t, c in curves.items()
            if isinstance(c, dict) and all(isinstance(c.get(key), list) for key in ("n", "max", "median"))}


def reward_models() -> QuerySet[Checkpoint]:
    return Checkpoint.objects.filter(kind=Checkpoint.Kind.REWARD_MODEL).select_related("run", "base")


def accuracy_rows(evaluation: dict) -> list[tuple[str, list[float | None]]]:
    """Table 8's rows for one reward model: per test set (focus), the accuracy per strength level
    and the average; then all held-out pairs together."""
    rows = [(focus, [row.get(s) for s in STRENGTHS] + [row.get("average")])
            for focus, row in (evaluation.get("table") or {}).items()]
    overall = evaluation.get("accuracy_per_strength") or {}
    if overall:
        rows.append(("all held-out pairs", [overall.get(s) for s in STRENGTHS]
                     + [(evaluation.get("accuracy") or {}).get("overall")]))
    return rows
