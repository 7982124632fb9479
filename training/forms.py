"""The dashboard's launch forms: they parse the fields; `launch.run_launch` and the rules it calls
decide. A reward run's defaults are the job's (training/jobs/reward.py REWARD_DEFAULTS)."""

from django import forms

from annotation.models import Batch, Focus, PreferenceSource
from core.preference_scale import MARGIN_TABLES
from modelserving.models import PolicyVariant

from .checkpoints import DEFAULT_BASE_NAME
from .data import ROLES
from .jobs.reward import REWARD_DEFAULTS
from .models import Checkpoint, TrainingRun
from .policy import SETTINGS

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
    base = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), required=False,
                                  empty_label=f"{DEFAULT_BASE_NAME} (the default; registered at the first launch)",
                                  help_text="The chat checkpoint whose LM head is replaced by a scalar head.")
    margin_table = forms.ChoiceField(choices=[(t, t) for t in MARGIN_TABLES], initial=REWARD_DEFAULTS.margin_table)
    learning_rate = forms.FloatField(initial=REWARD_DEFAULTS.learning_rate)
    epochs = forms.FloatField(initial=REWARD_DEFAULTS.epochs)
    max_length = forms.IntegerField(initial=REWARD_DEFAULTS.max_length,
                                    help_text="Tokens; longer pairs keep their last tokens.")
    batch_size = forms.IntegerField(initial=REWARD_DEFAULTS.batch_size, help_text="Pairs per optimiser step.")
    per_device_batch_size = forms.IntegerField(initial=REWARD_DEFAULTS.per_device_batch_size,
                                               help_text="Pairs per forward pass (the rest accumulate).")
    trainable_layers = forms.IntegerField(initial=REWARD_DEFAULTS.trainable_layers, min_value=0,
                                          help_text="Train only the top N transformer blocks and the head (much "
                                                    "cheaper on a CPU); 0: all, as the paper.")
    seed = forms.IntegerField(initial=REWARD_DEFAULTS.seed, min_value=0)

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
                  "max_length", "batch_size", "per_device_batch_size", "trainable_layers", "seed")
        return {**{key: data[key] for key in fields}, "mix": mix}



class PolicyRunForm(forms.Form):
    """Policy runs and model-based evaluations. Fields a kind does not use are ignored; the rules
    (what each kind needs) live in training.policy."""

    kind = forms.ChoiceField(choices=[(k, TrainingRun.Kind(k).label) for k in SETTINGS])
    name = forms.CharField(max_length=120, required=False)
    batches = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                        help_text="SFT: their demonstrations; rejection sampling and PPO: the prompts "
                                                  "of their training split; evaluation: their held-out prompts.")
    base = forms.ModelChoiceField(queryset=Checkpoint.objects.none(), required=False,
                                  help_text="The policy to start from.")
    variant = forms.ChoiceField(required=False, help_text="Rejection sampling and Ghost Attention sample from it.")
    variants = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                         help_text="Evaluation: two or more variants to compare.")
    helpfulness_rm = forms.ChoiceField(required=False, label="Helpfulness RM")
    safety_rm = forms.ChoiceField(required=False, label="Safety RM")
    pool_runs = forms.MultipleChoiceField(required=False, widget=forms.CheckboxSelectMultiple,
                                          label="Pool the kept samples of", help_text="Earlier rejection-sampling rounds.")
    instructions = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}),
                                   help_text="Ghost Attention: one instruction per line.")
    prompts = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}), max_length=200_000,
                              help_text="Evaluation: its own held-out prompts, one per line (empty: the batches' "
                                        "held-out split).")
    learning_rate = forms.CharField(required=False, help_text="Empty: the paper's (SFT 2e-5, PPO 1e-6).")
    epochs = forms.CharField(required=False)
    max_length = forms.CharField(required=False)
    per_device_batch_size = forms.CharField(required=False)
    gradient_accumulation_steps = forms.CharField(required=False)
    trainable_layers = forms.CharField(required=False, help_text="Fine-tune only the top N blocks; empty: all.")
    k = forms.CharField(required=False, label="K samples per prompt")
    temperature = forms.CharField(required=False)
    max_tokens = forms.CharField(required=False)
    iterations = forms.CharField(required=False, label="PPO iterations")
    batch_size = forms.CharField(required=False, label="PPO rollouts per iteration")
    mini_batch_size = forms.CharField(required=False, label="PPO mini-batch")
    kl_coef = forms.CharField(required=False, label="PPO β (KL)")
    seed = forms.CharField(required=False)

    SETTING_FIELDS = ("learning_rate", "epochs", "max_length", "per_device_batch_size", "gradient_accumulation_steps",
                      "trainable_layers", "k", "temperature", "max_tokens", "iterations", "batch_size", "mini_batch_size", "kl_coef", "seed")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        self.fields["batches"].choices = [(str(b), str(b)) for b in Batch.objects.filter(status=Batch.Status.FROZEN)]
        self.fields["base"].queryset = Checkpoint.objects.filter(kind=Checkpoint.Kind.POLICY)
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
                "job_settings": {key: data[key] for key in self.SETTING_FIELDS if data.get(key)}}
