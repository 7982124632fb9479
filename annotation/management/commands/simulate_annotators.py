from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from accounts.roles import ANNOTATOR
from accounts.services import user_create
from annotation.workspace.simulation import (
    DEFAULT_PROMPTS,
    DEFAULT_THRESHOLDS,
    FOCI,
    PreferenceModel,
    SimulationConfig,
    SimulationError,
    parse_kinds,
    read_prompts,
    run_simulation,
)

DEFAULT_PASSWORD = "tandem-simulation-pw-7"


class Command(BaseCommand):
    help = ("Drive a running Tandem through its public API with N concurrent simulated annotators whose "
            "judgements follow a preference function (demos, load tests, end-to-end loop tests).")

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Base URL of a running Tandem.")
        parser.add_argument("--annotators", type=int, default=2,
                            help="Concurrent annotators, named sim-annotator-<i>.")
        parser.add_argument("--dialogues", type=int, default=1, help="Dialogues per annotator.")
        parser.add_argument("--turns", type=int, default=2, help="Judged turns per dialogue.")
        parser.add_argument("--focus", choices=FOCI, default="helpfulness", help="mixed: drawn per dialogue.")
        parser.add_argument("--preference", default="annotation.workspace.simulation.keyword_preference",
                            help="Dotted path to a callable (context, response) -> float; higher is better.")
        parser.add_argument("--safety", default=None,
                            help="Dotted path to a callable (context, response) -> bool (default: all safe).")
        parser.add_argument("--noise", type=float, default=0.0,
                            help="Std-dev of the Gaussian noise added to each score (0: deterministic).")
        parser.add_argument("--thresholds", default=",".join(map(str, DEFAULT_THRESHOLDS)),
                            help="Score gaps for significantly better, better, slightly better (a,b,c).")
        parser.add_argument("--kinds", default="",
                            help="How the annotators behave, kind=count adding up to --annotators, in order: "
                                 "careful (the default), spammer, position_biased, adversarial; e.g. "
                                 "careful=7,spammer=2,position_biased=1.")
        parser.add_argument("--seed", type=int, default=0, help="Seeds each annotator's RNG.")
        parser.add_argument("--prompts", default=None,
                            help=f"File with one prompt per line (default: {len(DEFAULT_PROMPTS)} built in).")
        parser.add_argument("--password", default=DEFAULT_PASSWORD, help="The simulated accounts' password.")
        parser.add_argument("--create-accounts", action="store_true",
                            help="Create missing sim-annotator-<i> accounts in this project's database "
                                 "(it must be the one the server at --url uses).")
        parser.add_argument("--timeout", type=float, default=120.0,
                            help="Seconds to wait for both responses of a turn.")
        parser.add_argument("--retries", type=int, default=1, help="Retries of a failed response, per side.")

    def handle(self, *args, **options):
        for name in ("annotators", "dialogues", "turns"):
            if options[name] < 1:
                raise CommandError(f"--{name} must be at least 1.")
        if options["timeout"] <= 0 or options["retries"] < 0:
            raise CommandError("--timeout must be positive and --retries at least 0.")
        try:
            model = PreferenceModel.from_paths(preference=options["preference"], safety=options["safety"],
                                               noise=options["noise"], thresholds=options["thresholds"])
            prompts = read_prompts(options["prompts"]) if options["prompts"] else DEFAULT_PROMPTS
            kinds = parse_kinds(options["kinds"], options["annotators"]) if options["kinds"] else ()
        except SimulationError as error:
            raise CommandError(str(error)) from error
        usernames = tuple(f"sim-annotator-{index}" for index in range(options["annotators"]))
        if options["create_accounts"]:
            self._create_accounts(usernames, options["password"])
        config = SimulationConfig(
            base_url=options["url"], usernames=usernames, password=options["password"], model=model,
            prompts=prompts, dialogues=options["dialogues"], turns=options["turns"], focus=options["focus"],
            seed=options["seed"], timeout=options["timeout"], retries=options["retries"], kinds=kinds,
        )
        self.stdout.write(f"{len(usernames)} simulated annotators × {config.dialogues} dialogues × "
                          f"{config.turns} turns against {config.base_url} ({config.focus}, "
                          f"{options['preference']}, noise {model.noise:g})")
        try:
            summary = run_simulation(config)
        except SimulationError as error:
            raise CommandError(str(error)) from error
        for line in summary.lines():
            self.stdout.write(line)
        if summary.total("stored") == 0 and summary.failures:
            raise CommandError(f"No judgement was stored. First failure: {summary.failures[0]}")

    def _create_accounts(self, usernames, password):
        existing = set(get_user_model().objects.filter(username__in=usernames)
                       .values_list("username", flat=True))
        for username in usernames:
            if username in existing:
                continue
            try:
                user_create(username=username, password=password, role=ANNOTATOR)
            except ValidationError as error:
                raise CommandError(f"Cannot create {username}: " + "; ".join(error.messages)) from error
            self.stdout.write(f"created annotator {username}")
