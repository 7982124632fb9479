"""Red-team pages: annotators run timed sessions against one variant (htmx, and plain forms without
JavaScript); admins and researchers read the robustness factor and the coverage matrix.

Fragments are the templates ``safety/_redteam_attempt.html``, ``_redteam_prompt_form.html`` and
``_redteam_clock.html``; POST views return them alone to htmx and redirect plain form posts."""

from datetime import datetime

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import role_required
from accounts.roles import ADMIN, ANNOTATOR, RESEARCHER
from annotation.models import AttackVector, RiskCategory
from core.charts import bar_chart
from core.exceptions import refusal_status
from core.forms import add_service_errors
from core.values import yes_no
from modelserving.models import PolicyVariant

from . import redteam

POLL_MS = 400  # while a response streams in, as in the workspace
CLOCK_POLL_S = 10


class SessionStartForm(forms.Form):
    """The models are offered by alias ("Model 1"): a red teamer never learns a variant's name."""

    model = forms.ChoiceField(choices=())
    minutes = forms.IntegerField(initial=30, widget=forms.NumberInput(
        attrs={"min": redteam.MIN_MINUTES, "max": redteam.MAX_MINUTES, "step": 5}),
        help_text=f"Between {redteam.MIN_MINUTES} and {redteam.MAX_MINUTES} minutes.")

    def __init__(self, *args, annotator, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["model"].choices = [(alias, alias) for alias in redteam.variant_aliases(annotator=annotator)]


class AttemptForm(forms.Form):
    """Shape only: the rules (non-empty, length, both tags) are redteam.attempt_post's."""

    prompt = forms.CharField(required=False, strip=False, widget=forms.Textarea(attrs={"rows": 4}))
    risk_category = forms.ModelChoiceField(RiskCategory.objects.filter(is_active=True), required=False)
    attack_vector = forms.ModelChoiceField(AttackVector.objects.filter(is_active=True), required=False)


def _problems(error: ValidationError) -> list[str]:
    return error.messages


def _form_problems(form: forms.Form) -> list[str]:
    return [problem for problems in form.errors.values() for problem in problems]


def _attempt_context(attempt, *, problems=()) -> dict:
    generation = attempt.generation
    state = redteam.session_state(attempt.session)
    return {
        "attempt": attempt,
        "generation": generation,
        "generating": not generation.is_finished,
        "markable": generation.is_finished and (attempt.violating is None or state != redteam.FINISHED),
        "poll_ms": POLL_MS,
        "problems": list(problems),
    }


def _clock_context(session, *, oob: bool = False) -> dict:
    now = timezone.now()
    left = redteam.seconds_left(session, now=now)
    return {"session": session, "state": redteam.session_state(session, now=now), "seconds_left": left,
            "clock": f"{left // 60}:{left % 60:02d}", "ended_at": redteam.session_ended_at(session),
            "clock_poll_s": CLOCK_POLL_S, "oob": oob}


def _home(request, form, status=200):
    return render(request, "safety/redteam_home.html", {
        "form": form,
        "sessions": list(redteam.sessions_for(annotator=request.user)[:50]),
        "running": redteam.running_session_for(annotator=request.user),
    }, status=status)


@require_GET
@role_required(ANNOTATOR)
def home(request):
    return _home(request, SessionStartForm(annotator=request.user))


@require_POST
@role_required(ANNOTATOR)
def session_start(request):
    form = SessionStartForm(request.POST, annotator=request.user)
    if form.is_valid():
        try:
            session = redteam.session_start(annotator=request.user, alias=form.cleaned_data["model"],
                                            minutes=form.cleaned_data["minutes"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            return redirect("safety:redteam_session", pk=session.pk)
    return _home(request, form, status=400)


@require_GET
@role_required(ANNOTATOR)
def session_detail(request, pk: int):
    session = redteam.own_session(annotator=request.user, pk=pk)
    return render(request, "safety/redteam_session.html", {
        **_clock_context(session),
        "attempts": [_attempt_context(a) for a in redteam.session_attempts(session=session)],
        "form": AttemptForm(),
    })


@require_GET
@role_required(ANNOTATOR)
def session_clock(request, pk: int):
    session = redteam.own_session(annotator=request.user, pk=pk)
    return render(request, "safety/_redteam_clock.html", _clock_context(session, oob=True))


@require_POST
@role_required(ANNOTATOR)
def attempt_post(request, pk: int):
    session = redteam.own_session(annotator=request.user, pk=pk)
    form = AttemptForm(request.POST)
    problems = _form_problems(form) if not form.is_valid() else []
    attempt = None
    if not problems:
        try:
            attempt = redteam.attempt_post(session=session, annotator=request.user, **form.cleaned_data)
        except ValidationError as error:
            problems = _problems(error)
    if not request.htmx:
        for problem in problems:
            messages.error(request, problem)
        return redirect("safety:redteam_session", pk=session.pk)
    if problems:
        # The form again, with what was written and why it was refused (200: htmx swaps only 2xx).
        return render(request, "safety/_redteam_prompt_form.html",
                      {"session": session, "form": form, "problems": problems})
    # A fresh form (the tags kept for the next try), and the new attempt on top of the list.
    fresh = AttemptForm(initial={"risk_category": form.cleaned_data["risk_category"],
                                 "attack_vector": form.cleaned_data["attack_vector"]})
    return render(request, "safety/_redteam_prompt_form.html", {
        "session": session, "form": fresh,
        "new_attempt": _attempt_context(redteam.own_attempt(annotator=request.user, pk=attempt.pk))})


@require_GET
@role_required(ANNOTATOR)
def attempt_fragment(request, pk: int):
    attempt = redteam.own_attempt(annotator=request.user, pk=pk)
    return render(request, "safety/_redteam_attempt.html", _attempt_context(attempt))


@require_POST
@role_required(ANNOTATOR)
def attempt_mark(request, pk: int):
    attempt = redteam.own_attempt(annotator=request.user, pk=pk)
    problems = []
    try:
        violating = yes_no(request.POST.get("violating", ""))
    except ValueError:
        problems = ["Say violating or not violating."]
    else:
        try:
            redteam.attempt_mark(attempt=attempt, annotator=request.user, violating=violating,
                                 note=request.POST.get("note", ""))
        except ValidationError as error:
            problems = _problems(error)
    if not request.htmx:
        for problem in problems:
            messages.error(request, problem)
        return redirect("safety:redteam_session", pk=attempt.session_id)
    # Problems come back inside the fragment, with 200: htmx swaps only 2xx answers.
    return render(request, "safety/_redteam_attempt.html",
                  _attempt_context(redteam.own_attempt(annotator=request.user, pk=pk), problems=problems))


@require_POST
@role_required(ANNOTATOR)
def session_finish(request, pk: int):
    session = redteam.session_finish(session=redteam.own_session(annotator=request.user, pk=pk), annotator=request.user)
    messages.success(request, f"Session #{session.pk} finished.")
    return redirect("safety:redteam_session", pk=session.pk)


# --- Admins and researchers -------------------------------------------------------------------


def results_filters(params) -> tuple[PolicyVariant | None, datetime | None]:
    """``variant`` (a name; an unknown one is ignored) and ``since`` (an ISO date, from local
    midnight: ValidationError for one that is none, as the API answers) from a query string."""
    name = params.get("variant", "")
    variant = PolicyVariant.objects.filter(name=name).first() if name else None
    since = redteam.since_from(params["since"]) if params.get("since") else None
    return variant, since


@require_GET
@role_required(ADMIN, RESEARCHER)
def results(request):
    try:
        variant, since = results_filters(request.GET)
    except ValidationError as error:  # 2026-02-30: the page says so, as the API does
        return render(request, "safety/redteam_results.html", {
            "errors": error.messages, "variants": PolicyVariant.objects.order_by("name"), "table": [],
            "coverage": None, "since": ""}, status=refusal_status(error))
    vendor = request.GET.get("vendor") or None
    table = redteam.robustness(variant=variant, since=since, vendor=vendor)
    chart = bar_chart("Robustness factor (violating prompts per person-hour)",
                      [(row["variant"], row["robustness_factor"] or 0.0) for row in table],
                      value_format="{:.2f}", width=560)
    return render(request, "safety/redteam_results.html", {
        "table": table, "chart": chart,
        "coverage": redteam.coverage(variant=variant, since=since, vendor=vendor), "vendor": vendor or "",
        "variants": PolicyVariant.objects.order_by("name"), "variant": variant,
        "since": since.date().isoformat() if since else "",
    })
