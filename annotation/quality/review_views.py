"""Overlap review for annotators and the data-quality page for admins (htmx-free forms: the
review page works as plain HTML; the workspace's keys work on it too)."""

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import role_required
from accounts.roles import ADMIN, ANNOTATOR
from core.charts import bar_chart
from core.leases import LeaseLost

from ..batches.selectors import batch_by_label
from ..models import Batch, Focus, GoldItem, OverlapPolicy, ReviewTask, Turn
from ..workspace import scale
from ..workspace.forms import JudgementForm
from . import review
from .quality import quality_report


def _task_context(task: ReviewTask) -> dict:
    a, b = review.review_sides(task)
    return {"task": task, "context": a.messages, "responses": [("A", a), ("B", b)],
            "is_safety": task.turn.dialogue.focus == Focus.SAFETY,
            "scale": [(point, scale.LABELS[point]) for point in range(1, 9)]}


def _held(user) -> ReviewTask | None:
    return (ReviewTask.objects.filter(review.held_by(user)).select_related("turn__dialogue")
            .prefetch_related("turn__pair__generations").order_by("pk").first())


@role_required(ANNOTATOR)
@require_GET
def review_page(request):
    task = _held(request.user)
    context = _task_context(task) if task else {"waiting": ReviewTask.objects.filter(
        status=ReviewTask.Status.OPEN, kind=ReviewTask.Kind.OVERLAP).exclude(
        turn__dialogue__annotator=request.user).count()}
    return render(request, "annotation/review.html", context)


@role_required(ANNOTATOR)
@require_POST
def review_claim(request):
    if review.review_claim(reviewer=request.user) is None:
        messages.info(request, "No review work for you right now.")
    return redirect("annotation:review")


@role_required(ANNOTATOR)
@require_POST
def review_submit(request, pk: int):
    task = (ReviewTask.objects.select_related("turn__dialogue").prefetch_related("turn__pair__generations")
            .filter(pk=pk, leased_by=request.user).first())
    if task is None:
        return render(request, "annotation/review.html", {"problems": [
            "This review is not yours (any more): its lease went to someone else."]}, status=409)
    form = JudgementForm(request.POST)
    problems = form.problems() if not form.is_valid() else []
    if not problems:
        try:
            review.review_submit(task=task, reviewer=request.user, lease_token=request.POST.get("lease_token", ""),
                                 judgement=form.judgement())
        except LeaseLost as error:
            return render(request, "annotation/review.html", {"problems": error.messages}, status=409)
        except ValidationError as error:
            problems = error.messages
        else:
            messages.success(request, "Review stored.")
            review.review_claim(reviewer=request.user)  # straight on to the next one, if any
            return redirect("annotation:review")
    return render(request, "annotation/review.html",
                  {**_task_context(task), "problems": problems, "values": request.POST}, status=400)


def _report_for(request) -> tuple[dict, Batch | None, str]:
    batch = batch_by_label(request.GET.get("batch", "")) if request.GET.get("batch") else None
    focus = request.GET.get("focus") if request.GET.get("focus") in Focus.values else ""
    try:
        resamples = max(10, min(int(request.GET.get("resamples", 500)), 5000))
    except ValueError:
        resamples = 500
    return quality_report(batch=batch, focus=focus or None, resamples=resamples), batch, focus


@role_required(ADMIN)
@require_http_methods(["GET", "POST"])
def quality_page(request):
    problems = []
    if request.method == "POST":
        try:
            review.overlap_policy_set(admin=request.user, focus=request.POST.get("focus", ""),
                                      share=float(request.POST.get("share", "")),
                                      reviewers=int(request.POST.get("reviewers", "")))
            messages.success(request, "Overlap policy saved.")
            return redirect("annotation:quality")
        except ValueError:
            problems = ["Share and reviewers must be numbers."]
        except ValidationError as error:
            problems = error.messages
    report, batch, focus = _report_for(request)
    groups = [("all", report["overall"]), *report["by_focus"].items(),
              *((f"vendor {name}", figures) for name, figures in report["by_vendor"].items())]
    charts = [
        bar_chart("AC1 on the choice", [(name, g["ac1_choice"]["value"] or 0) for name, g in groups],
                  value_format="{:.3f}", max_value=1),
        bar_chart("AC2 (quadratic) on the 8-point scale", [(name, g["ac2_quadratic"]["value"] or 0)
                                                           for name, g in groups], value_format="{:.3f}", max_value=1),
        bar_chart("Gold accuracy per annotator", [(row["annotator"], row["gold_accuracy"])
                                                  for row in report["annotators"] if row["gold_accuracy"] is not None],
                  value_format="{:.0%}", max_value=1),
    ]
    return render(request, "annotation/quality.html", {
        "report": report, "groups": groups, "charts": charts, "batches": Batch.objects.all(), "batch": batch,
        "focus": focus, "focuses": Focus.choices, "gold_items": GoldItem.objects.count(),
        "gold_rate_pct": round(100 * settings.REVIEW_GOLD_RATE), "policies": [
            (value, label, OverlapPolicy.objects.filter(focus=value).first()) for value, label in Focus.choices],
        "problems": problems}, status=400 if problems else 200)


@role_required(ADMIN)
@require_POST
def gold_mark(request):
    """Mark a judged turn as a gold item whose expected answer is its judgement."""
    turn = Turn.objects.filter(pk=request.POST.get("turn") if request.POST.get("turn", "").isdigit() else None,
                               submitted_at__isnull=False, both_unusable=False).first()
    if turn is None:
        messages.error(request, "No judged turn with that id (a pair marked both unusable cannot be gold).")
    else:
        review.gold_mark(admin=request.user, turn=turn, choice_generation_id=turn.chosen_generation_id,
                         strength=turn.strength if request.POST.get("with_strength") else "",
                         note=request.POST.get("note", "")[:2000])
        messages.success(request, f"Turn {turn.pk} is a gold item now.")
    return redirect("annotation:quality")


@role_required(ADMIN)
@require_GET
def quality_json(request):
    return JsonResponse(_report_for(request)[0])
