import json

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from modelserving import services
from modelserving.models import PolicyVariant


class Command(BaseCommand):
    help = "Manage policy variants: list, set (create or update), activate, deactivate."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("list", help="Show every variant (add --json for machines).").add_argument(
            "--json", action="store_true")
        put = sub.add_parser("set", help="Create a variant, or update the named fields of an existing one.")
        put.add_argument("name")
        put.add_argument("--base-url")
        put.add_argument("--model-name")
        put.add_argument("--api-key-env")
        put.add_argument("--temperature", nargs=2, type=float, metavar=("MIN", "MAX"))
        put.add_argument("--top-p", type=float)
        put.add_argument("--max-new-tokens", type=int)
        put.add_argument("--weight", type=float)
        put.add_argument("--notes")
        put.add_argument("--inactive", action="store_true", help="Create or leave it inactive.")
        for name in ("activate", "deactivate"):
            sub.add_parser(name).add_argument("name")

    def handle(self, *args, action, **options):
        try:
            getattr(self, f"_{action}")(**options)
        except ValidationError as error:
            raise CommandError("; ".join(error.messages)) from error

    def _list(self, json=False, **_):
        rows = list(PolicyVariant.objects.values(
            "name", "base_url", "model_name", "temperature_min", "temperature_max", "top_p",
            "max_new_tokens", "sampling_weight", "is_active"))
        if json:
            self.stdout.write(_json(rows))
            return
        for row in rows:
            self.stdout.write(
                f"{row['name']:<16} {'active' if row['is_active'] else 'inactive':<9} "
                f"T {row['temperature_min']}–{row['temperature_max']}  top_p {row['top_p']}  "
                f"max {row['max_new_tokens']}  weight {row['sampling_weight']}  {row['model_name']} @ {row['base_url']}"
            )

    def _set(self, name, base_url=None, model_name=None, api_key_env=None, temperature=None, top_p=None,
             max_new_tokens=None, weight=None, notes=None, inactive=False, **_):
        fields = {
            "base_url": base_url, "model_name": model_name, "api_key_env": api_key_env, "top_p": top_p,
            "max_new_tokens": max_new_tokens, "sampling_weight": weight, "notes": notes,
        }
        if temperature:
            fields["temperature_min"], fields["temperature_max"] = temperature
        fields = {key: value for key, value in fields.items() if value is not None}
        variant = PolicyVariant.objects.filter(name=name).first()
        if variant is None:
            missing = [f for f in ("base_url", "model_name", "temperature_min") if f not in fields]
            if missing:
                raise CommandError("A new variant needs --base-url, --model-name and --temperature MIN MAX.")
            variant = services.variant_create(name=name, is_active=not inactive, **fields)
            self.stdout.write(f"Created variant {variant.name}.")
        else:
            if inactive:
                fields["is_active"] = False
            services.variant_update(variant=variant, **fields)
            self.stdout.write(f"Updated variant {variant.name}.")

    def _toggle(self, name, active):
        variant = PolicyVariant.objects.filter(name=name).first()
        if variant is None:
            raise CommandError(f"No variant named {name!r}.")
        services.variant_update(variant=variant, is_active=active)
        self.stdout.write(f"{'Activated' if active else 'Deactivated'} variant {name}.")

    def _activate(self, name, **_):
        self._toggle(name, True)

    def _deactivate(self, name, **_):
        self._toggle(name, False)


def _json(rows):
    return json.dumps(rows, indent=2)
