from django import forms
from django.core.exceptions import ValidationError

from core.forms import add_service_errors


class MinutesForm(forms.Form):
    minutes = forms.IntegerField()


def test_a_refusal_lands_on_its_field_where_the_form_has_it_else_on_the_form():
    form = MinutesForm({"minutes": 3})
    assert form.is_valid()
    add_service_errors(form, ValidationError({"minutes": ["At least 5."], "variant": ["Not active."]}))
    assert form.errors == {"minutes": ["At least 5."], "__all__": ["Not active."]}
    plain = MinutesForm({"minutes": 3})
    plain.is_valid()
    add_service_errors(plain, ValidationError("Nope."))
    assert plain.non_field_errors() == ["Nope."]
