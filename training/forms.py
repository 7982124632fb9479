"""The dashboard's launch form: it parses the fields; `services.run_launch` holds the rules."""

from django import forms

from annotation.models import Batch, Focus, PreferenceSource

from .data import ROLES
from .jobs.losses import MARGIN_TABLES
from .models import Checkpoint

ROLE_CHOICES = [("", "default for the focus")] + [(role, role) for role in ROLES]


class RewardRunForm(forms.Form):
    name = forms.CharField(max_length=120, required=False, help_text="Optional; names the checkpoint.")
    focus = forms.ChoiceField(choices=Focus.choices, initial=Focus.HELPFULNESS)
    batches = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="Frozen weekly batches; their held-out splits are the test set.")
    sources = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="Imported open-source preference data.")
    other_focus = forms.ChoiceField(choices=[(r, r) for r in ROLES], initial="secondary",
                                    label="Pairs of the other focus")
    primary_share = forms.FloatField(required=False, min_value=0.01, max_value=1,
                                     help_text="Share of primary pairs in the training set; empty: 0.5 for "
                                               "helpfulness, 0.9 for safety (Llama 2).")
    base = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), empty_label=None,
                                  help_text="The chat checkpoint whose LM head is replaced by a scalar head.")
    margin_table = forms.ChoiceField(choices=[(t, t) for t in MARGIN_TABLES], initial="small")
    learning_rate = forms.FloatField(initial=1e-5)
    epochs = forms.FloatField(initial=1.0)
    max_length = forms.IntegerField(initial=1024, help_text="Tokens; longer pairs keep their last tokens.")
    batch_size = forms.IntegerField(initial=512, help_text="Pairs per optimiser step.")
    per_device_batch_size = forms.IntegerField(initial=8, help_text="Pairs per forward pass (the rest accumulate).")
    seed = forms.IntegerField(initial=0, min_value=0)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        frozen = Batch.objects.filter(status=Batch.Status.FROZEN)
        self.fields["batches"].choices = [(str(b), f"{b} ({b.summary.get('judgements', '?')} judgements)") for b in frozen]
        self.sources = list(PreferenceSource.objects.order_by("name"))
        self.fields["sources"].choices = [(s.name, f"{s.name} ({s.get_kind_display()}"
                                                   f"{', ' + s.focus if s.focus else ''})") for s in self.sources]
        for source in self.sources:
            self.fields[f"role_{source.name}"] = forms.ChoiceField(choices=ROLE_CHOICES, required=False,
                                                                    label=f"{source.name} is")
        self.fields["base"].queryset = Checkpoint.objects.filter(kind=Checkpoint.Kind.POLICY)

    def role_fields(self):
        return [self[f"role_{source.name}"] for source in self.sources]

    def launch_arguments(self) -> dict:
        data = self.cleaned_data
        mix = {"other_focus": data["other_focus"],
               "sources": {s.name: data[f"role_{s.name}"] for s in self.sources if data.get(f"role_{s.name}")}}
        if data["primary_share"] is not None:
            mix["primary_share"] = data["primary_share"]
        fields = ("name", "focus", "batches", "sources", "base", "margin_table", "learning_rate", "epochs",
                  "max_length", "batch_size", "per_device_batch_size", "seed")
        return {**{key: data[key] for key in fields}, "mix": mix}

    def add_service_errors(self, error) -> None:
        for field, messages in error.message_dict.items():
            for message in messages:
                self.add_error(field if field in self.fields else None, message)
