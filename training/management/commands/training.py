import json
import time
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.management.base import BaseCommand, CommandError

from training import selectors, services
from training.checkpoints import checkpoint_register
from training.job_settings import CONFIGS, POLICY_KINDS, settings_for
from training.launch import run_launch, run_relaunch
from training.models import Checkpoint, TrainingRun


def _given_settings(items: list[str]) -> dict[str, str]:
    """`--setting KEY=VALUE` items as a dict (the launch checks each against its job's config)."""
    settings = {}
    for item in items:
        if "=" not in item:
            raise CommandError(f"--setting {item!r}: use KEY=VALUE.")
        key, value = item.split("=", 1)
        settings[key.strip()] = value.strip()
    return settings


def _settings_help(kind: str) -> str:
    names = ", ".join(f"{name} (default {item.default})" for name, item in settings_for(kind).items())
    return f"A job setting (repeat): {names}."


class Command(BaseCommand):
    help = ("Training runs and checkpoints, as on the researchers' dashboard: launch a reward-model run, "
            "list, show, cancel, register a checkpoint folder, fail runs whose heartbeat stopped.")

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        launch = sub.add_parser("launch", help="Queue a reward-model run on the gpu workers.")
        launch.add_argument("--researcher", required=True, help="Username of the researcher launching it.")
        launch.add_argument("--focus", required=True, choices=["helpfulness", "safety"])
        launch.add_argument("--batch", action="append", default=[], help="A frozen batch, e.g. 2026-W48 (repeat).")
        launch.add_argument("--source", action="append", default=[],
                            help="An imported source, optionally with its role: hh-harmless=primary (repeat).")
        launch.add_argument("--primary-share", type=float, help="Default 0.5 (helpfulness) / 0.9 (safety).")
        launch.add_argument("--other-focus", default="secondary", help="primary | secondary | exclude")
        launch.add_argument("--base", help="Checkpoint name (default: the converted SmolLM2).")
        launch.add_argument("--name", default="")
        launch.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                            help=_settings_help(TrainingRun.Kind.REWARD_MODEL))
        launch.add_argument("--wait", action="store_true", help="Print progress until the run finishes.")
        policy = sub.add_parser("policy", help="Queue a policy run (sft, rejection_sampling, ppo, gatt, dpo, rloo, "
                                               "context_distillation) or a "
                                               "model-based evaluation (policy_eval).")
        policy.add_argument("--researcher", required=True)
        policy.add_argument("--kind", required=True, choices=list(POLICY_KINDS))
        policy.add_argument("--batch", action="append", default=[])
        policy.add_argument("--base", help="Policy checkpoint name (default: the converted SmolLM2).")
        policy.add_argument("--variant", default="", help="The variant rejection sampling, GAtt and context "
                                                                 "distillation sample from.")
        policy.add_argument("--compare", action="append", default=[], help="A variant to evaluate (repeat).")
        policy.add_argument("--helpfulness-rm", default="")
        policy.add_argument("--safety-rm", default="")
        policy.add_argument("--pool-run", action="append", type=int, default=[])
        policy.add_argument("--instruction", action="append", default=[], help="Ghost Attention (repeat).")
        policy.add_argument("--focus", default="", help="DPO: helpfulness or safety pairs.")
        policy.add_argument("--source", action="append", default=[], help="DPO: an imported source (repeat).")
        policy.add_argument("--reference", default="", help="DPO: the reference checkpoint (default: the base).")
        policy.add_argument("--prompts", default=None,
                            help="Evaluation: a file of held-out prompts, one per line (default: the batches' split).")
        policy.add_argument("--setting", action="append", default=[], metavar="KEY=VALUE",
                            help="A job setting of the kind (repeat), e.g. --setting learning_rate=1e-5 "
                                 "--setting k=8; `training settings KIND` lists them.")
        policy.add_argument("--name", default="")
        policy.add_argument("--wait", action="store_true")
        sub.add_parser("list")
        listed = sub.add_parser("settings", help="The settings a run of KIND takes: defaults, bounds, help.")
        listed.add_argument("kind", choices=list(CONFIGS))
        show = sub.add_parser("show", help="A run as JSON, with its metric series.")
        show.add_argument("run", type=int)
        cancel = sub.add_parser("cancel")
        cancel.add_argument("run", type=int)
        cancel.add_argument("--researcher", required=True)
        relaunch = sub.add_parser("relaunch", help="Launch a failed or cancelled run again, same settings.")
        relaunch.add_argument("run", type=int)
        relaunch.add_argument("--researcher", required=True)
        sub.add_parser("checkpoints")
        register = sub.add_parser("register", help="Register a checkpoint folder (a base chat model, or an RM).")
        register.add_argument("path")
        register.add_argument("--name", required=True)
        register.add_argument("--kind", default="policy", choices=Checkpoint.Kind.values)
        register.add_argument("--focus", default="")
        sub.add_parser("check-heartbeats", help="Fail running runs whose heartbeat stopped.")
        cluster = sub.add_parser("openrlhf", help="Write the prompts of frozen batches and print the commands "
                                                  "that run PPO on a Ray cluster with OpenRLHF (docs/cluster-ppo.md).")
        cluster.add_argument("--batch", action="append", required=True)
        cluster.add_argument("--policy", required=True, help="Policy checkpoint name, or a path on the cluster.")
        cluster.add_argument("--helpfulness-rm", default="", help="Reward model checkpoint name or path.")
        cluster.add_argument("--safety-rm", default="")
        cluster.add_argument("--reward-url", default="http://reward:${TANDEM_REWARD_TOKEN}@tandem-rm:5000/get_reward",
                             help="How the cluster reaches the reward server; its token as the URL's password "
                                  "(OpenRLHF sends it as HTTP Basic).")
        cluster.add_argument("--reward-host", default="127.0.0.1",
                             help="Address the reward server listens on (0.0.0.0 for a cluster on other boxes).")
        cluster.add_argument("--working-dir", default="",
                             help="A folder shipped to the Ray job as its working_dir (runtime_env).")
        cluster.add_argument("--ray-address", default="http://127.0.0.1:8265")
        cluster.add_argument("--out", required=True, help="Folder for prompts.jsonl and the commands.")
        cluster.add_argument("--save-path", default="/checkpoints/ppo")
        cluster.add_argument("--nodes", type=int, default=1)
        cluster.add_argument("--gpus-per-node", type=int, default=8)

    def handle(self, *args, action, **options):
        try:
            getattr(self, "_" + action.replace("-", "_"))(**options)
        except (ValidationError, PermissionDenied) as error:  # a refusal: exit status 2, as for a bad flag
            if hasattr(error, "error_dict"):
                raise CommandError("; ".join(f"{field}: {' '.join(messages)}"
                                             for field, messages in error.message_dict.items()),
                                   returncode=2) from error
            raise CommandError("; ".join(getattr(error, "messages", [str(error)])), returncode=2) from error

    def _settings(self, *, kind, **_):
        for name, item in settings_for(kind).items():
            allowed = " | ".join(item.choices) if item.choices else (
                "yes | no" if item.type is bool else "text" if item.type is str else f"{item.low:g} … {item.high:g}")
            self.stdout.write(f"{name} = {item.default}  ({allowed})  {item.help}")

    def _user(self, username):
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"No user {username!r}.")
        return user

    def _run(self, pk):
        run = TrainingRun.objects.select_related("base", "launched_by").filter(pk=pk).first()
        if run is None:
            raise CommandError(f"No run {pk}.")
        return run

    def _launch(self, *, researcher, focus, batch, source, primary_share, other_focus, base, wait, setting, name,
                **_):
        roles = dict(item.split("=", 1) for item in source if "=" in item)
        mix = {"other_focus": other_focus, "sources": roles}
        if primary_share is not None:
            mix["primary_share"] = primary_share
        base_checkpoint = None
        if base:
            base_checkpoint = Checkpoint.objects.filter(name=base).first()
            if base_checkpoint is None:
                raise CommandError(f"No checkpoint {base!r}.")
        run = run_launch(researcher=self._user(researcher), kind=TrainingRun.Kind.REWARD_MODEL, focus=focus,
                         batches=batch, sources=[item.split("=", 1)[0] for item in source], mix=mix,
                         base=base_checkpoint, name=name, settings=_given_settings(setting))
        on = ", ".join(run.data["batches"] + run.data["sources"])
        self.stdout.write(f"run {run.pk} queued: {run.focus} reward model on {on}")
        if wait:
            self._wait(run)

    def _policy(self, *, researcher, kind, batch, base, variant, compare, helpfulness_rm, safety_rm, pool_run,
                instruction, setting, name, wait, prompts=None, focus="", source=(), reference="", **_):
        base_checkpoint = Checkpoint.objects.filter(name=base).first() if base else None
        if base and base_checkpoint is None:
            raise CommandError(f"No checkpoint {base!r}.")
        run = run_launch(researcher=self._user(researcher), kind=kind, batches=batch, base=base_checkpoint,
                         variant=variant, variants=compare, helpfulness_rm=helpfulness_rm, safety_rm=safety_rm,
                         pool_runs=pool_run, instructions=instruction, name=name, settings=_given_settings(setting),
                         prompts=self._prompts(prompts), focus=focus, sources=list(source), reference=reference)
        self.stdout.write(f"run {run.pk} queued: {run.get_kind_display()}")
        if wait:
            self._wait(run)

    @staticmethod
    def _prompts(path: str | None) -> list[str]:
        if not path:
            return []
        try:
            return Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as error:
            raise CommandError(f"Cannot read prompts from {path}: {error}") from error

    def _wait(self, run):
        shown = None
        while True:
            run.refresh_from_db()
            line = f"run {run.pk}: {run.status} step {run.step}/{run.max_steps}"
            if line != shown:
                self.stdout.write(line)
                shown = line
            if run.is_finished:
                break
            time.sleep(2)
        if run.status != TrainingRun.Status.SUCCEEDED:
            raise CommandError(f"run {run.pk} {run.status}: {run.error}")
        if run.kind == TrainingRun.Kind.POLICY_EVAL:
            self.stdout.write(json.dumps(run.summary.get("evaluation", {}).get("win_rate"), indent=2))
        elif run.kind == TrainingRun.Kind.REWARD_MODEL:
            self.stdout.write(f"checkpoint {run.checkpoint}: {json.dumps(run.checkpoint.evaluation.get('table'))}")
        else:
            self.stdout.write(f"checkpoint {run.checkpoint} ({run.checkpoint.path})")

    def _list(self, **_):
        for run in selectors.runs_recent(200):
            self.stdout.write(f"{run.pk:>5}  {run.status:<9}  {run.focus:<11}  {run.step}/{run.max_steps}  "
                              f"{run.created_at:%Y-%m-%d %H:%M}  {run.launched_by}  {run.name}")

    def _show(self, *, run, **_):
        from training.api import RunDetailSerializer

        self.stdout.write(json.dumps(RunDetailSerializer(self._run(run)).data, indent=2, default=str))

    def _cancel(self, *, run, researcher, **_):
        run = services.run_cancel(run=self._run(run), user=self._user(researcher))
        self.stdout.write(f"run {run.pk}: {'cancelled' if run.is_finished else 'cancel requested'}")

    def _relaunch(self, *, run, researcher, **_):
        relaunched = run_relaunch(run=self._run(run), researcher=self._user(researcher))
        self.stdout.write(f"run {relaunched.pk}: queued again from run {run}")

    def _checkpoints(self, **_):
        for checkpoint in Checkpoint.objects.all():
            overall = (checkpoint.evaluation.get("accuracy") or {}).get("overall")
            self.stdout.write(f"{checkpoint.pk:>5}  {checkpoint.kind:<12}  {checkpoint.focus or '-':<11}  "
                              f"{checkpoint.name}  {'' if overall is None else f'{overall} %'}  {checkpoint.path}")

    def _register(self, *, path, name, kind, focus, **_):
        checkpoint = checkpoint_register(name=name, kind=kind, path=path, focus=focus)
        self.stdout.write(f"checkpoint {checkpoint.pk} {checkpoint.name} registered")

    def _openrlhf(self, *, batch, policy, helpfulness_rm, safety_rm, reward_url, ray_address, out, save_path, nodes,
                  gpus_per_node, reward_host="127.0.0.1", working_dir="", **_):
        from pathlib import Path

        from annotation.batches.selectors import batch_by_label
        from training.data import prompts_write
        from training.openrlhf import ClusterPPO, ppo_command, reward_server_command, shell

        batches = []
        for label in batch:
            found = batch_by_label(label)
            if found is None or not found.is_frozen:
                raise CommandError(f"{label}: no such frozen batch.")
            batches.append(found)

        def path_of(name):
            checkpoint = Checkpoint.objects.filter(name=name).first() if name else None
            return checkpoint.path if checkpoint else name

        out = Path(out)
        count = prompts_write(batches=batches, out=out / "prompts.jsonl")
        job = ClusterPPO(prompts=str((out / "prompts.jsonl").resolve()), policy=path_of(policy), reward_url=reward_url,
                         save_path=save_path, ray_address=ray_address, nodes=nodes, gpus_per_node=gpus_per_node,
                         working_dir=working_dir)
        commands = {"reward_server": shell(reward_server_command(helpfulness_rm=path_of(helpfulness_rm),
                                                                 safety_rm=path_of(safety_rm), host=reward_host)),
                    "ppo": shell(ppo_command(job))}
        (out / "commands.json").write_text(json.dumps(commands, indent=2) + "\n")
        self.stdout.write(f"{count} prompts → {out / 'prompts.jsonl'}\n\n1. on a GPU box the cluster can reach:\n"
                          f"   {commands['reward_server']}\n\n2. submit PPO to the Ray cluster:\n   {commands['ppo']}")

    def _check_heartbeats(self, **_):
        failed = services.runs_fail_silent()
        self.stdout.write(f"failed {len(failed)} silent run(s){': ' + ', '.join(map(str, failed)) if failed else ''}")
