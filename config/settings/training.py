"""Training runs (part of base.py's settings)."""

from pathlib import Path

from .environment import VAR_DIR, env

# --- Training runs ----------------------------------------------------------------------------
# Each run writes its data files and its checkpoint under TRAINING_DIR/run-<id>/ on the GPU worker.
TRAINING_DIR = Path(env.str("TRAINING_DIR", default=str(VAR_DIR / "runs")))
# The launching task writes a heartbeat this often; the periodic check fails a running run whose
# heartbeat is older than TRAINING_HEARTBEAT_TIMEOUT (its worker died or lost the database).
TRAINING_HEARTBEAT_SECONDS = env.float("TRAINING_HEARTBEAT_SECONDS", default=5.0)
TRAINING_HEARTBEAT_TIMEOUT = env.int("TRAINING_HEARTBEAT_TIMEOUT", default=120)
# A run's wall-clock limit (the Celery limits of other tasks are far too short for training).
TRAINING_RUN_TIME_LIMIT = env.int("TRAINING_RUN_TIME_LIMIT", default=3 * 24 * 3600)
# Seconds a cancelled job gets between SIGTERM and SIGKILL of its process group.
TRAINING_KILL_GRACE = env.float("TRAINING_KILL_GRACE", default=10.0)
TRAINING_LOG_TAIL_LINES = env.int("TRAINING_LOG_TAIL_LINES", default=200)
# How a job starts: empty for `python -m training.jobs.<job>` on this worker's Python; several GPUs:
# e.g. "accelerate launch --config_file /etc/tandem/fsdp.yaml" (the job module is appended with -m).
TRAINING_LAUNCHER = env.str("TRAINING_LAUNCHER", default="")
