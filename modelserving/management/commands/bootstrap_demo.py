from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts import services as accounts
from accounts.roles import ROLES
from modelserving import services
from modelserving.models import PolicyVariant

DEMO_PASSWORDS = {"annotator": "judge-pairs-42", "admin": "freeze-batches-42", "researcher": "train-models-42"}
VARIANTS = {
    "cool": {"temperature_min": 0.5, "temperature_max": 0.8, "port_offset": 0},
    "warm": {"temperature_min": 1.0, "temperature_max": 1.3, "port_offset": 1},
}


class Command(BaseCommand):
    help = ("Embedded default: the 'cool' and 'warm' variants on the local SmolLM2 servers, "
            "and one demo account per role (idempotent).")

    def add_arguments(self, parser):
        parser.add_argument("--no-accounts", action="store_true")

    def handle(self, *args, no_accounts=False, **options):
        if not settings.DEMO_ACCOUNTS:
            raise CommandError("bootstrap_demo creates accounts with published passwords and variants on "
                               "loopback: it runs only on the embedded default (config.settings.local).")
        model_dir = str(settings.DEFAULT_MODEL_DIR.resolve())
        for name, spec in VARIANTS.items():
            port = settings.DEFAULT_MODEL_PORT + spec["port_offset"]
            fields = {
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model_name": model_dir,
                "temperature_min": spec["temperature_min"],
                "temperature_max": spec["temperature_max"],
                "top_p": 0.9,
                "max_new_tokens": 256,
                "notes": "SmolLM2-135M-Instruct on CPU (embedded default).",
            }
            variant = PolicyVariant.objects.filter(name=name).first()
            if variant is None:
                services.variant_create(name=name, **fields)
                self.stdout.write(f"variant {name}: created ({fields['base_url']})")
            else:
                services.variant_update(variant=variant, **fields)
                self.stdout.write(f"variant {name}: up to date ({fields['base_url']})")
        if no_accounts:
            return
        User = get_user_model()
        self.stdout.write("Demo accounts (change or remove them before real use):")
        for role in ROLES:
            username = f"demo-{role}"
            password = DEMO_PASSWORDS[role]
            if not User.objects.filter(username=username).exists():
                accounts.user_create(username=username, password=password, role=role)
            self.stdout.write(f"  {role:<11} {username} / {password}")
