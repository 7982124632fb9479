import os
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from modelserving.engines import ENGINES, local_engine, serve_command, serve_environment
from modelserving.local_models import is_prepared


class Command(BaseCommand):
    help = ("Serve a local checkpoint (default: the converted SmolLM2) on 127.0.0.1 with this machine's engine: vLLM's "
            "CPU build where it runs, else `transformers serve` (it says which, and why).")

    def add_arguments(self, parser):
        parser.add_argument("--model", type=Path, default=None, help="Checkpoint folder (default: DEFAULT_MODEL_DIR).")
        parser.add_argument("--port", type=int, default=None, help="Port (default: DEFAULT_MODEL_PORT).")
        parser.add_argument("--threads", type=int, default=None, help="torch threads for this server.")
        parser.add_argument("--engine", choices=ENGINES, default=None,
                            help="auto, vllm or transformers (default: LOCAL_MODEL_ENGINE).")
        parser.add_argument("--which", action="store_true",
                            help="Say which engine would serve, and why; serve nothing.")

    def handle(self, *args, model=None, port=None, threads=None, engine=None, which=False, **options):
        try:
            chosen = local_engine(engine or settings.LOCAL_MODEL_ENGINE, venv=settings.VLLM_VENV)
        except ValueError as error:
            raise CommandError(str(error)) from error
        if which:
            self.stdout.write(f"The variants' model servers: {chosen.why}")
            return
        model_dir = (model or settings.DEFAULT_MODEL_DIR).resolve()
        if model is None and not is_prepared(model_dir):
            raise CommandError(f"{model_dir} is not prepared: run `manage.py prepare_default_model` first.")
        command = serve_command(chosen, model_dir, port=port or settings.DEFAULT_MODEL_PORT, venv=settings.VLLM_VENV,
                                max_model_len=settings.VLLM_MAX_MODEL_LEN)
        self.stdout.write(f"serving {model_dir} with {chosen.why}")
        self.stdout.write(" ".join(command))
        self.stdout.flush()
        os.execvpe(command[0], command, serve_environment(chosen, threads=threads or settings.LOCAL_SERVE_THREADS,
                                                          kv_cache_gib=settings.VLLM_KV_CACHE_GIB))
