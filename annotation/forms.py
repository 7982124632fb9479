from django import forms

from .models import AttackVector, Focus, RiskCategory


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


class RetryForm(forms.Form):
    side = forms.ChoiceField(choices=[("A", "A"), ("B", "B")])
