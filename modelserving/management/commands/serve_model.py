import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modelserving.local_models import is_prepared, serve_command, serve_environment


class Command(BaseCommand):
    help = "Serve a local checkpoint (default: the converted SmolLM2) with `transformers serve` on 127.0.0.1."

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, default=None, help="Checkpoint folder (default: DEFAULT_MODEL_DIR).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: DEFAULT_MODEL_PORT).")
        parser.add_argument("--threads", type=int, default=None, help="torch threads for this server.")

    def handle(self, *args, model=None, port=None, threads=None, **options):
        model_dir = (model or settings.DEFAULT_MODEL_DIR).resolve()
        if model is None and not is_prepared(model_dir):
            raise CommandError(f"{model_dir} is not prepared: run `manage.py prepare_default_model` first.")
        command = serve_command(model_dir, port=port or settings.DEFAULT_MODEL_PORT)
        self.stdout.write(" ".join(command))
        self.stdout.flush()
        os.execvpe(command[0], command, serve_environment(threads))
