"""The dashboard's launch forms: they parse the fields; `launch.run_launch` and the rules it calls
decide. The job settings' fields are made from the jobs' configs (training/job_settings.py): their
labels, help, bounds and defaults are the jobs'."""

from django import forms

from annotation.models import Batch, Focus, PreferenceSource
from modelserving.models import PolicyVariant

from .checkpoints import DEFAULT_BASE_NAME
from .data import ROLES
from .job_settings import POLICY_KINDS, JobSetting, all_settings, settings_for
from .models import Checkpoint, TrainingRun

ROLE_CHOICES = [("", "default for the focus")] + [(role, role) for role in ROLES]


def setting_field(item: JobSetting, *, help_text: str | None = None) -> forms.Field:
    """The form field of a job setting; empty means the job's default (the validator fills it in)."""
    common = {"label": item.title, "help_text": item.help if help_text is None else help_text, "required": False}
    if item.type is bool:
        return forms.ChoiceField(choices=[("", f"default ({'yes' if item.default else 'no'})"), ("yes", "yes"),
                                          ("no", "no")], **common)
    if item.choices:
        return forms.ChoiceField(choices=[(c, c) for c in item.choices], initial=item.default, **common)
    if item.type is str:
        return forms.CharField(max_length=200, **common)
    bounds = {"min_value": item.low, "max_value": item.high}
    if item.type is int:
        return forms.IntegerField(**bounds, **common)
    return forms.FloatField(**bounds, **common)


def _settings_given(data: dict, names) -> dict:
    return {name: data[name] for name in names if data.get(name) not in (None, "")}


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
    base = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), required=False,
                                  empty_label=f"{DEFAULT_BASE_NAME} (the default; registered at the first launch)",
                                  help_text="The chat checkpoint whose LM head is replaced by a scalar head.")
    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        self.setting_names = list(settings_for(TrainingRun.Kind.REWARD_MODEL))
        for name, item in settings_for(TrainingRun.Kind.REWARD_MODEL).items():
            self.fields[name] = setting_field(item, help_text=f"{item.help} Default {item.default}.")
            self.fields[name].widget.attrs["placeholder"] = str(item.default)
        frozen = Batch.objects.filter(status=Batch.Status.FROZEN)
        self.fields["batches"].choices = [(str(b), f"{b} ({b.summary.get('judgements', '?')} judgements)")
                                          for b in frozen]
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
        arguments = {key: data[key] for key in ("name", "focus", "batches", "sources", "base")}
        return {**arguments, "mix": mix, "settings": _settings_given(data, self.setting_names)}



class PolicyRunForm(forms.Form):
    """Policy runs and model-based evaluations. Fields a kind does not use are ignored; the rules
    (what each kind needs) live in training.policy."""

    kind = forms.ChoiceField(choices=[(k, TrainingRun.Kind(k).label) for k in POLICY_KINDS])
    name = forms.CharField(max_length=120, required=False)
    batches = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="SFT: their demonstrations; rejection sampling and PPO: the prompts "
                                                  "of their training split; evaluation: their held-out prompts.")
    base = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), required=False,
                                  help_text="The policy to start from.")
    variant = forms.ChoiceField(required=False, help_text="Rejection sampling, Ghost Attention and context "
                                                                        "distillation sample from it.")
    variants = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                         help_text="Evaluation: two or more variants to compare.")
    helpfulness_rm = forms.ChoiceField(required=False, label="Helpfulness RM")
    safety_rm = forms.ChoiceField(required=False, label="Safety RM")
    pool_runs = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                          label="Pool the kept samples of",
                                          help_text="Earlier rejection-sampling rounds.")
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                   help_text="Ghost Attention: one instruction per line.")
    prompts = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=200_000,
                              help_text="Evaluation: its own held-out prompts, one per line (empty: the batches' "
                                        "held-out split).")
    focus = forms.ChoiceField(required=False, choices=[("", "—"), *Focus.choices],
                              help_text="DPO: the pairs it learns from (mixed as a reward model of that focus mixes "
                                        "them).")
    sources = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="DPO: imported preference data mixed in.")
    reference = forms.ChoiceField(required=False, help_text="DPO: the frozen reference (empty: the start "
                                                            "checkpoint); it must share the policy's tokenizer.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        # Every setting any policy kind has; each kind takes its own (the rest are refused by name).
        self.setting_names = list(all_settings())
        for name, item in all_settings().items():
            kinds = [kind for kind in POLICY_KINDS if name in settings_for(kind)]
            defaults = ", ".join(f"{TrainingRun.Kind(k).label} {settings_for(k)[name].default}" for k in kinds)
            self.fields[name] = setting_field(item, help_text=f"{item.help} Empty: the default ({defaults}).")
        self.fields["batches"].choices = [(str(b), str(b)) for b in Batch.objects.filter(status=Batch.Status.FROZEN)]
        self.fields["base"].queryset = Checkpoint.objects.filter(kind=Checkpoint.Kind.POLICY)
        self.fields["sources"].choices = [(s, s) for s in PreferenceSource.objects.order_by("name")
                                          .values_list("name", flat=True)]
        self.fields["reference"].choices = [("", "—")] + [
            (c, c) for c in Checkpoint.objects.filter(kind=Checkpoint.Kind.POLICY).values_list("name", flat=True)]
        names = [(v, v) for v in PolicyVariant.objects.order_by("name").values_list("name", flat=True)]
        self.fields["variant"].choices = [("", "—")] + names
        self.fields["variants"].choices = names
        for focus in ("helpfulness", "safety"):
            self.fields[f"{focus}_rm"].choices = [("", "—")] + [
                (c, c) for c in Checkpoint.objects.filter(kind=Checkpoint.Kind.REWARD_MODEL, focus=focus)
                .values_list("name", flat=True)]
        self.fields["pool_runs"].choices = [
            (str(r.pk), f"#{r.pk} {r.name}") for r in TrainingRun.objects.filter(
                kind=TrainingRun.Kind.REJECTION_SAMPLING, status=TrainingRun.Status.SUCCEEDED)]

    def launch_arguments(self) -> dict:
        data = self.cleaned_data
        return {"kind": data["kind"], "name": data["name"], "batches": data["batches"], "base": data["base"],
                "variant": data["variant"], "variants": data["variants"], "helpfulness_rm": data["helpfulness_rm"],
                "safety_rm": data["safety_rm"], "pool_runs": [int(pk) for pk in data["pool_runs"]],
                "instructions": data["instructions"].splitlines(), "prompts": data["prompts"].splitlines(),
                "focus": data["focus"], "sources": data["sources"], "reference": data["reference"],
                "settings": _settings_given(data, self.setting_names)}
