"""The researchers' dashboard: launch reward-model runs, watch them, compare their checkpoints."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import role_required
from accounts.roles import RESEARCHER
from core.charts import bar_chart, histogram_chart, line_chart, lines_chart
from core.exceptions import refusal_status
from core.forms import add_service_errors
from core.preference_scale import STRENGTHS
from core.sql import id_fits

from . import launch, selectors, services
from .checkpoints import DEFAULT_BASE_NAME
from .forms import PolicyRunForm, RewardRunForm
from .models import Checkpoint, TrainingRun

CURVE_TITLES = {"loss": "Loss", "accuracy": "Training accuracy (batch)", "margin": "Mean reward margin",
                "learning_rate": "Learning rate", "reward": "Reward (mean raw score)", "kl": "KL to the reference",
                "policy_loss": "Policy loss", "value_loss": "Value loss", "entropy": "Entropy",
                "clip_frac": "Clip fraction", "grad_norm": "Gradient norm",
                "eval_rewards/accuracies": "Held-out reward accuracy (implicit reward, chosen above rejected)",
                "eval_rewards/margins": "Held-out reward margin (chosen − rejected)",
                "rewards/accuracies": "Training reward accuracy (batch)", "rewards/margins": "Training reward margin",
                "raw_reward": "Reward LOGIT(R_c) (mean raw score of the batch's answers)",
                "completions/mean_length": "Answer length (tokens)"}


@role_required(RESEARCHER)
@require_http_methods(["GET", "POST"])
def dashboard(request):
    form = RewardRunForm(request.POST or None, initial={"base": Checkpoint.objects.filter(
        name=DEFAULT_BASE_NAME).first()})
    if request.method == "POST" and form.is_valid():
        try:
            run = launch.run_launch(researcher=request.user, kind=TrainingRun.Kind.REWARD_MODEL,
                                    **form.launch_arguments())
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect("training:run", run.pk)
    context = {"form": form, **_runs_context(), "reward_models": selectors.reward_models()}
    return render(request, "training/dashboard.html", context, status=400 if form.errors else 200)


@role_required(RESEARCHER)
@require_http_methods(["GET", "POST"])
def policy_launch(request):
    """Launch SFT, rejection sampling, PPO, Ghost Attention or a model-based evaluation."""
    form = PolicyRunForm(request.POST or None, initial={
        "kind": request.GET.get("kind", TrainingRun.Kind.SFT),
        "base": Checkpoint.objects.filter(name=DEFAULT_BASE_NAME).first()})
    if request.method == "POST" and form.is_valid():
        try:
            run = launch.run_launch(researcher=request.user, **form.launch_arguments())
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect("training:run", run.pk)
    return render(request, "training/policy_launch.html", {"form": form}, status=400 if form.errors else 200)


def _runs_context() -> dict:
    runs = list(selectors.runs_recent())
    return {"runs": runs, "active": any(not run.is_finished for run in runs)}


@role_required(RESEARCHER)
@require_GET
def runs(request):
    """The run list alone (the dashboard polls it while runs are active)."""
    return render(request, "training/_runs.html", _runs_context())


def _run_context(run: TrainingRun) -> dict:
    series = selectors.run_series(run)
    return {"run": run, "charts": [line_chart(CURVE_TITLES.get(name, name), points) for name, points in series.items()],
            "curve_charts": _reward_curve_charts(selectors.reward_curves(run))}


def _reward_curve_charts(curves: dict) -> list[str]:
    """Llama 2's Figure 7 per temperature (max and median reward among the first N samples) and,
    with several temperatures, Figure 8 (the max at each)."""
    charts = [lines_chart(f"Reward among the first N samples · T {temperature}",
                          {"max": list(zip(curve["n"], curve["max"])),
                           "median": list(zip(curve["n"], curve["median"]))}, x_label="samples (N)")
              for temperature, curve in curves.items()]
    if len(curves) > 1:
        charts.append(lines_chart("Max reward among the first N samples, per temperature",
                                  {f"T {t}": list(zip(c["n"], c["max"])) for t, c in curves.items()},
                                  x_label="samples (N)"))
    return charts


@role_required(RESEARCHER)
@require_GET
def run_detail(request, pk: int):
    run = get_object_or_404(TrainingRun.objects.select_related("base", "launched_by"), pk=pk)
    template = "training/_run_live.html" if request.htmx else "training/run.html"
    return render(request, template, _run_context(run))


@role_required(RESEARCHER)
@require_POST
def run_cancel(request, pk: int):
    run = get_object_or_404(TrainingRun, pk=pk)
    try:
        run = services.run_cancel(run=run, user=request.user)
    except (ValidationError, PermissionDenied) as error:  # finished already (409), someone else's run (403)
        message = error.messages[0] if isinstance(error, ValidationError) else str(error)
        context = {**_run_context(run), "cancel_error": message}
        return render(request, "training/_run_live.html" if request.htmx else "training/run.html", context,
                      status=refusal_status(error))
    if request.htmx:
        return render(request, "training/_run_live.html", _run_context(run))
    return redirect("training:run", run.pk)


@role_required(RESEARCHER)
@require_POST
def run_relaunch(request, pk: int):
    run = get_object_or_404(TrainingRun.objects.select_related("base"), pk=pk)
    try:
        relaunched = launch.run_relaunch(run=run, researcher=request.user)
    except ValidationError as error:
        context = {**_run_context(run), "cancel_error": error.messages[0]}
        return render(request, "training/run.html", context, status=409)
    return redirect("training:run", relaunched.pk)


def _checkpoint_context(checkpoint: Checkpoint) -> dict:
    evaluation = checkpoint.evaluation or {}
    return {"checkpoint": checkpoint, "rows": selectors.accuracy_rows(evaluation),
            "histogram": histogram_chart(f"Scores on the held-out pairs · {checkpoint}",
                                         {"chosen": (evaluation.get("histograms") or {}).get("chosen"),
                                          "rejected": (evaluation.get("histograms") or {}).get("rejected")}),
            "pairs": evaluation.get("pairs"), "length_bias": evaluation.get("length_bias")}


def _serve_numbers(posted) -> dict:
    """The serve form's numbers (ValueError for what is no number); empty ones: the service's defaults."""
    kinds = {"temperature_min": float, "temperature_max": float, "max_new_tokens": int}
    return {key: kind(posted[key]) for key, kind in kinds.items() if posted.get(key, "").strip()}


@role_required(RESEARCHER)
@require_http_methods(["GET", "POST"])
def checkpoint_detail(request, pk: int):
    """A checkpoint: a reward model's evaluation, or a policy's lineage and the action that puts it
    in front of annotators as a new variant."""
    checkpoint = get_object_or_404(Checkpoint.objects.select_related("run", "base", "variant"), pk=pk)
    problems = []
    if request.method == "POST":
        try:
            variant = services.checkpoint_serve(
                checkpoint=checkpoint, researcher=request.user, name=request.POST.get("name", "").strip(),
                **_serve_numbers(request.POST), base_url=request.POST.get("base_url", "").strip(),
                model_name=request.POST.get("model_name", "").strip())
        except ValueError:
            problems = ["Temperatures and max tokens must be numbers."]
        except ValidationError as error:
            problems = error.messages
        else:
            when = ("once an admin approves its endpoint" if variant.awaiting_approval else "now" if variant.is_active
                    else "once its model server answers (it is loading the model)")
            messages.success(request, f"Variant {variant.name} is serving {checkpoint} and joins pairing {when}.")
            return redirect("training:checkpoint", checkpoint.pk)
    side = _checkpoint_context(checkpoint)
    return render(request, "training/checkpoint.html", {
        **side, "side": side, "strengths": STRENGTHS, "others": selectors.reward_models().exclude(pk=pk),
        "problems": problems, "serving": settings.POLICY_SERVING, "serve": services.serve_defaults(),
        "vllm": services.vllm_command(checkpoint, "<name>")}, status=400 if problems else 200)


@role_required(RESEARCHER)
@require_GET
def checkpoint_compare(request):
    """Two reward models side by side: Table 8's rows and the score histograms of each."""
    try:
        ids = [int(request.GET[key]) for key in ("a", "b")]
    except (KeyError, ValueError):
        raise Http404("Pick two reward models.") from None
    if not all(id_fits(Checkpoint, pk) for pk in ids):  # beyond the database's integers: no such row
        raise Http404("Pick two different reward models.")
    found = {c.pk: c for c in selectors.reward_models().filter(pk__in=ids)}
    if len(found) != len(set(ids)) or len(set(ids)) != 2:
        raise Http404("Pick two different reward models.")
    return render(request, "training/compare.html",
                  {"sides": [_checkpoint_context(found[i]) for i in ids], "strengths": STRENGTHS})


@role_required(RESEARCHER)
@require_GET
def leaderboard_page(request):
    """Variants ranked by human votes (Bradley–Terry over the judgements, 95 % bootstrap intervals)."""
    from annotation.batches.selectors import batch_by_label
    from annotation.models import Batch

    from .leaderboard import leaderboard_read

    batch = batch_by_label(request.GET["batch"]) if request.GET.get("batch") else None
    board = leaderboard_read(batch=batch)
    if request.GET.get("format") == "json":
        return JsonResponse(board)
    rows = board["leaderboard"]
    chart = bar_chart("Bradley–Terry score (log-strength; 0 = average)",
                      [(row["variant"], row["score"] - min(r["score"] for r in rows)) for row in rows],
                      value_format="{:.2f}") if rows else ""
    return render(request, "training/leaderboard.html",
                  {"rows": rows, "chart": chart, "batches": Batch.objects.all(), "batch": batch,
                   "groups": board["groups"], "style": board["style"]})
