"""Demonstrations: annotators write a prompt and its ideal answer, or rewrite a chosen response."""

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import Http404
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.decorators import role_required
from accounts.roles import ANNOTATOR
from core.forms import add_service_errors

from ..models import Demonstration
from ..workspace.selectors import own_turn
from . import services


class DemonstrationForm(forms.Form):
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                    help_text="Optional instructions the model would see first.")
    prompt = forms.CharField(widget=forms.Textarea(attrs={"rows": 4}), required=False)
    answer = forms.CharField(widget=forms.Textarea(attrs={"rows": 10}), required=False,
                             help_text="The answer you would want the model to give: helpful, honest and safe.")


class RewriteForm(forms.Form):
    answer = forms.CharField(widget=forms.Textarea(attrs={"rows": 12}), required=False)


@role_required(ANNOTATOR)
@require_http_methods(["GET", "POST"])
def demonstrations(request):
    form = DemonstrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            services.demonstration_write(annotator=request.user, **form.cleaned_data)
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Demonstration stored.")
            return redirect("annotation:demonstrations")
    mine = Demonstration.objects.filter(annotator=request.user)[:50]
    return render(request, "annotation/demonstrations.html", {"form": form, "mine": mine},
                  status=400 if form.errors else 200)


@role_required(ANNOTATOR)
@require_http_methods(["GET", "POST"])
def rewrite(request, pk: int):
    turn = own_turn(annotator=request.user, pk=pk)
    if not turn.is_judged or turn.chosen_generation_id is None:
        raise Http404
    chosen = turn.chosen_generation
    form = RewriteForm(request.POST or None, initial={"answer": chosen.text})
    if request.method == "POST" and form.is_valid():
        try:
            services.demonstration_rewrite(annotator=request.user, turn=turn, answer=form.cleaned_data["answer"])
        except ValidationError as error:
            add_service_errors(form, error)
        else:
            messages.success(request, "Rewrite stored as a demonstration.")
            return redirect("annotation:demonstrations")
    return render(request, "annotation/rewrite.html", {"form": form, "turn": turn, "chosen": chosen},
                  status=400 if form.errors else 200)
