"""The annotator's workspace: Django templates and htmx. Views parse, call a service, render."""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import role_required
from accounts.roles import ANNOTATOR
from core.exceptions import refusal_status
from modelserving.models import Generation

from ..models import Dialogue, Focus, Guideline, Strength
from . import judgements, scale, services
from .forms import DialogueStartForm, JudgementForm, MessageForm, RetryForm
from .selectors import (
    active_dialogues_for,
    history_for,
    judged_today_count,
    own_dialogue,
    own_turn,
    own_turn_bare,
    sides,
    turns_with_pairs,
)

POLL_MS = 400  # partial text refreshes at least every 500 ms while a response streams in


def _errors(error: ValidationError) -> list[str]:
    return error.messages


def _turn_context(turn, *, form_errors=None, form_values=None) -> dict:
    a, b = sides(turn)
    generating = any(g.status in ("queued", "running") for g in (a, b))
    judged_choice = None
    if turn.chosen_generation_id is not None:
        judged_choice = "A" if turn.chosen_generation_id == a.id else "B"
    return {
        "turn": turn,
        "dialogue": turn.dialogue,
        "responses": [("A", a), ("B", b)],
        "generating": generating,
        # A pair with a failed response can still be marked both unusable (or a side retried).
        "judgeable": not turn.is_judged and a.status in Generation.FINISHED and b.status in Generation.FINISHED,
        "poll_ms": POLL_MS,
        "scale": [(point, scale.LABELS[point]) for point in range(1, 9)],
        "is_safety": turn.dialogue.focus == Focus.SAFETY,
        "judged_choice": judged_choice,
        "judged_point": scale.to_point(judged_choice, turn.strength) if judged_choice else None,
        "judged_label": scale.LABELS[scale.to_point(judged_choice, turn.strength)] if judged_choice else None,
        "form_errors": form_errors or [],
        "values": form_values or {},
        "message_form": MessageForm(),
    }


def _render_turn(request, turn, status=200, **extra):
    return render(request, "annotation/_turn.html", _turn_context(turn, **extra), status=status)


@require_GET
@role_required(ANNOTATOR)
def workspace(request):
    return render(request, "annotation/workspace.html", {
        "form": DialogueStartForm(),
        "active": active_dialogues_for(annotator=request.user)[:20],
        "today": judged_today_count(annotator=request.user),
        "guidelines": Guideline.objects.filter(is_active=True),
    })


@require_POST
@role_required(ANNOTATOR)
def dialogue_start(request):
    form = DialogueStartForm(request.POST)
    status = 400
    if form.is_valid():
        try:
            dialogue = services.dialogue_start(annotator=request.user, **form.cleaned_data)
        except ValidationError as error:  # no pair can be sampled now: 503, as the API answers
            status = refusal_status(error)
            for message in _errors(error):
                form.add_error(None, message)
        else:
            return redirect("annotation:dialogue", pk=dialogue.pk)
    return render(request, "annotation/workspace.html", {
        "form": form, "active": active_dialogues_for(annotator=request.user)[:20],
        "today": judged_today_count(annotator=request.user),
        "guidelines": Guideline.objects.filter(is_active=True)}, status=status)


@require_GET
@role_required(ANNOTATOR)
def dialogue_detail(request, pk: int):
    return _dialogue_page(request, own_dialogue(annotator=request.user, pk=pk))


def _dialogue_page(request, dialogue, status: int = 200):
    turns = list(turns_with_pairs().filter(dialogue=dialogue).order_by("index"))
    current = turns[-1] if turns else None
    past = turns[:-1] if current is not None and not current.is_judged else turns
    if current is not None and current.is_judged:
        current = None
    context = {
        "dialogue": dialogue,
        "past": [_turn_context(t) for t in past],
        "current": current,
        "current_html": render_to_string("annotation/_turn.html", _turn_context(current), request)
        if current is not None else "",
        "message_form": MessageForm(),
        "can_write": dialogue.status == Dialogue.Status.ACTIVE and current is None and (
            not past or past[-1].chosen_generation_id is not None),
        "today": judged_today_count(annotator=request.user),
    }
    return render(request, "annotation/dialogue.html", context, status=status)


@require_POST
@role_required(ANNOTATOR)
def turn_post(request, pk: int):
    """The next message of a dialogue (its first, or the one after a judgement): services.turn_post,
    as the API's. A refusal answers with its own status (core.exceptions.refusal_status), as the API
    does: the prompt form with the reason (htmx), or the dialogue page with it."""
    dialogue = own_dialogue(annotator=request.user, pk=pk)
    form = MessageForm(request.POST)
    previous = dialogue.turns.order_by("-index").first()
    try:
        turn = services.turn_post(dialogue=dialogue, annotator=request.user,
                                  user_message=form.data.get("user_message", ""))
    except ValidationError as error:
        status, problems = refusal_status(error), _errors(error)
        if not request.htmx:
            for problem in problems:
                messages.error(request, problem)
            return _dialogue_page(request, dialogue, status=status)
        response = render(request, "annotation/_prompt_form.html",
                          {"dialogue": dialogue, "message_form": form, "form_errors": problems}, status=status)
        # Replace only the form that was sent, not the turn around it.
        response["HX-Retarget"] = "closest .prompt-form"
        response["HX-Reswap"] = "outerHTML"
        return response
    if not request.htmx:
        return redirect("annotation:dialogue", pk=dialogue.pk)
    turn = own_turn(annotator=request.user, pk=turn.pk)
    response = _render_turn(request, turn)
    if previous is not None:
        # The judged turn joins the dialogue's past, above the new one.
        previous = own_turn(annotator=request.user, pk=previous.pk)
        previous_html = render(request, "annotation/_past_turn.html",
                               {"t": _turn_context(previous), "oob": True}).content
        response.content = response.content + previous_html
    return response


def _turn_answer(request, turn, *, problems=(), form_values=None, status: int = 200):
    """After an action on a turn: htmx gets the turn fragment afresh (with any problems); a plain
    form post gets the problems as messages and the dialogue page (a redirect when nothing was
    refused). A refusal answers with its own status, as the API does."""
    if not request.htmx:
        for problem in problems:
            messages.error(request, problem)
        if status == 200:
            return redirect("annotation:dialogue", pk=turn.dialogue_id)
        return _dialogue_page(request, own_dialogue(annotator=request.user, pk=turn.dialogue_id), status=status)
    return _render_turn(request, own_turn(annotator=request.user, pk=turn.pk), form_errors=list(problems),
                        form_values=form_values, status=status)


@require_GET
@role_required(ANNOTATOR)
def turn_fragment(request, pk: int):
    return _render_turn(request, own_turn(annotator=request.user, pk=pk))


@require_POST
@role_required(ANNOTATOR)
def judgement_submit(request, pk: int):
    form = JudgementForm(request.POST)
    if not form.is_valid():  # malformed, as the API's serializer refuses it: 400
        return _render_turn(request, own_turn(annotator=request.user, pk=pk), form_errors=form.problems(),
                            form_values=request.POST, status=400)
    # The ownership check reads the turn alone: the service reads it again, locked, with its pair.
    turn = own_turn_bare(annotator=request.user, pk=pk)
    try:
        turn, _ = judgements.judgement_submit(turn=turn, annotator=request.user, judgement=form.judgement())
    except ValidationError as error:
        return _turn_answer(request, turn, problems=_errors(error), form_values=request.POST,
                            status=refusal_status(error))
    if not request.htmx:
        return redirect("annotation:dialogue", pk=turn.dialogue_id)
    # The fragment from the rows the service locked and wrote (its answer needs nothing else).
    return _render_turn(request, turn)


@require_POST
@role_required(ANNOTATOR)
def generation_retry(request, pk: int):
    turn = own_turn(annotator=request.user, pk=pk)
    form = RetryForm(request.POST)  # the service checks the side (the API's serializer too)
    problems, status = [], 200
    try:
        services.generation_retry(turn=turn, annotator=request.user, side=form.data.get("side", ""))
    except ValidationError as error:
        problems, status = _errors(error), refusal_status(error)
    return _turn_answer(request, turn, problems=problems, status=status)


@require_POST
@role_required(ANNOTATOR)
def dialogue_finish(request, pk: int):
    services.dialogue_finish(dialogue=own_dialogue(annotator=request.user, pk=pk), annotator=request.user)
    messages.success(request, "Dialogue ended.")
    if request.htmx:
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("annotation:workspace")
        return response
    return redirect("annotation:workspace")


@require_GET
@role_required(ANNOTATOR)
def history(request):
    turns = list(history_for(annotator=request.user)[:100])
    return render(request, "annotation/history.html", {
        "rows": [_turn_context(t) for t in turns],
        "today": judged_today_count(annotator=request.user),
        "strengths": dict(Strength.choices),
    })


@require_GET
@role_required(ANNOTATOR)
def guideline(request, focus: str):
    guideline = Guideline.objects.filter(focus=focus, is_active=True).first()
    if guideline is None:
        raise Http404
    return render(request, "annotation/guideline.html", {"guideline": guideline})
