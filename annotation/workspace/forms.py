from django import forms

from ..models import AttackVector, Focus, RiskCategory
from . import scale
from .judgements import Judgement


class DialogueStartForm(forms.Form):
    focus = forms.ChoiceField(choices=Focus.choices, widget=forms.RadioSelect, initial=Focus.HELPFULNESS)
    system_prompt = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}),
                                    help_text="Optional instructions the model sees first.")
    risk_category = forms.ModelChoiceField(RiskCategory.objects.filter(is_active=True), required=False,
                                           help_text="Safety focus, adversarial prompts only.")
    attack_vector = forms.ModelChoiceField(AttackVector.objects.filter(is_active=True), required=False)


class MessageForm(forms.Form):
    user_message = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}))


class JudgementForm(forms.Form):
    """The screen's judgement: a point on the 8-point scale, safety labels, or 'both unusable'."""

    point = forms.TypedChoiceField(choices=[(i, i) for i in range(1, 9)], coerce=int, required=False,
                                   empty_value=None)
    safe_a = forms.TypedChoiceField(choices=[("safe", "safe"), ("unsafe", "unsafe")], required=False,
                                    coerce=lambda v: v == "safe", empty_value=None)
    safe_b = forms.TypedChoiceField(choices=[("safe", "safe"), ("unsafe", "unsafe")], required=False,
                                    coerce=lambda v: v == "safe", empty_value=None)
    both_unusable = forms.BooleanField(required=False)
    unusable_reason = forms.CharField(required=False, max_length=2000)
    time_spent_ms = forms.IntegerField(required=False, min_value=0)

    def judgement(self):
        """The cleaned form as the services' Judgement (call after is_valid())."""
        data = self.cleaned_data
        choice, strength = scale.from_point(data["point"]) if data["point"] else (None, None)
        return Judgement(choice=choice, strength=strength, safe_a=data["safe_a"], safe_b=data["safe_b"],
                         both_unusable=data["both_unusable"], unusable_reason=data["unusable_reason"],
                         time_spent_ms=data["time_spent_ms"])

    def problems(self) -> list[str]:
        return [error for errors in self.errors.values() for error in errors]


class RetryForm(forms.Form):
    side = forms.ChoiceField(choices=[("A", "A"), ("B", "B")])
