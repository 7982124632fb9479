from django import forms

from .roles import ROLE_LABELS


class InvitationForm(forms.Form):
    role = forms.ChoiceField(choices=list(ROLE_LABELS.items()))
    email = forms.EmailField(required=False, help_text="Optional: who the link is for.")


class InvitationAcceptForm(forms.Form):
    username = forms.CharField(max_length=150)
    password1 = forms.CharField(label="Password", widget=forms.PasswordInput, strip=False)
    password2 = forms.CharField(label="Password again", widget=forms.PasswordInput, strip=False)

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") != cleaned.get("password2"):
            raise forms.ValidationError("The two passwords differ.")
        return cleaned
