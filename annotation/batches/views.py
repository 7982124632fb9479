"""The admins' pages of weekly batches: the list, freeze, export jobs, downloads and figures."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import FileResponse, Http404, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import role_required
from accounts.roles import ADMIN

from ..models import Batch, ExportJob
from .export_jobs import export_download, export_request
from .exports import FORMATS
from .selectors import batch_by_label
from .services import batch_freeze, is_current
from .stats import batch_statistics, charts


def _with_exports(batches) -> list[Batch]:
    """Each batch with ``exports``: (format, its job or None) in FORMATS order, in one query."""
    batches = list(batches)
    jobs = {(job.batch_id, job.format): job
            for job in ExportJob.objects.filter(batch__in=[b for b in batches if b.is_frozen])}
    for batch in batches:
        batch.exports = [(fmt, jobs.get((batch.pk, fmt))) for fmt in FORMATS]
        batch.exporting = any(job is not None and job.is_active for _, job in batch.exports)
        batch.is_current = is_current(batch)
    return batches


@require_GET
@role_required(ADMIN)
def batch_list(request):
    from django.db.models import Count, Q

    batches = Batch.objects.select_related("frozen_by").annotate(
        judged=Count("turns", filter=Q(turns__submitted_at__isnull=False)))
    return render(request, "annotation/batches.html", {"batches": _with_exports(batches)})


def _batch_or_404(label: str) -> Batch:
    batch = batch_by_label(label)
    if batch is None:
        raise Http404
    return batch


@require_POST
@role_required(ADMIN)
def batch_freeze_view(request, label: str):
    batch = _batch_or_404(label)
    try:
        batch = batch_freeze(batch=batch, admin=request.user, force=request.POST.get("force") == "1")
    except ValidationError as error:
        messages.error(request, error.messages[0])
    else:
        messages.success(request, f"Froze {batch}." + (" Judgements submitted later this week go to a "
                                                        "follow-on batch." if batch.summary.get("frozen_early")
                                                        else ""))
    return redirect("annotation:batches")


def _exports_fragment(request, batch: Batch, *, problem: str = "", status: int = 200):
    return render(request, "annotation/_batch_exports.html",
                  {"batch": _with_exports([batch])[0], "problem": problem}, status=status)


@require_GET
@role_required(ADMIN)
def batch_exports(request, label: str):
    """One batch's exports: what the batches page polls while a job runs."""
    return _exports_fragment(request, _batch_or_404(label))


@require_POST
@role_required(ADMIN)
def batch_export_request(request, label: str):
    batch = _batch_or_404(label)
    fmt = request.POST.get("format", "")
    problem = ""
    try:
        export_request(batch=batch, admin=request.user, fmt=fmt)
    except ValidationError as error:
        problem = error.messages[0]
    if request.htmx:
        return _exports_fragment(request, batch, problem=problem, status=400 if problem else 200)
    if problem:
        messages.error(request, problem)
    return redirect("annotation:batches")


@require_GET
@role_required(ADMIN)
def batch_download(request, label: str, fmt: str):
    """A finished export's file; nothing is written here."""
    batch = _batch_or_404(label)
    if fmt not in FORMATS:
        raise Http404
    try:
        path = export_download(batch=batch, admin=request.user, fmt=fmt)
    except ValidationError as error:
        messages.error(request, error.messages[0])
        return redirect("annotation:batches")
    return FileResponse(open(path, "rb"), as_attachment=True, filename=path.name)


@require_GET
@role_required(ADMIN)
def batch_stats(request, label: str):
    batch = _batch_or_404(label)
    stats = batch_statistics(batch, vendor=request.GET.get("vendor") or None)
    if request.GET.get("format") == "json":
        return JsonResponse(stats)
    return render(request, "annotation/batch_stats.html", {"batch": batch, "stats": stats, "charts": charts(stats)})
