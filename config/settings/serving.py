"""Sampling from the policy variants, their health, and the models Tandem serves itself (part of
base.py's settings)."""

from pathlib import Path

from .environment import BASE_DIR, VAR_DIR, env

# --- Sampling -------------------------------------------------------------------------------
# Hosts a policy variant's endpoint may be on (checked when a variant is saved and before every
# request; see modelserving/endpoints.py for the patterns): loopback and the compose vLLM services.
VARIANT_ALLOWED_HOSTS = env.list("VARIANT_ALLOWED_HOSTS",
                                 default=["127.0.0.1", "localhost", "[::1]", "vllm-cool", "vllm-warm"])
SAMPLING = {
    # Seconds to open a connection to a policy variant's endpoint.
    "CONNECT_TIMEOUT": env.float("SAMPLING_CONNECT_TIMEOUT", default=5.0),
    # Seconds to wait for the next bytes of a response (between streamed chunks).
    "READ_TIMEOUT": env.float("SAMPLING_READ_TIMEOUT", default=60.0),
    # Tries per generation before it is marked failed (connection errors, timeouts, 5xx).
    "MAX_ATTEMPTS": env.int("SAMPLING_MAX_ATTEMPTS", default=5),
    # Exponential backoff between tries: base * 2**(try-1), capped, with full jitter.
    "BACKOFF_BASE": env.float("SAMPLING_BACKOFF_BASE", default=1.0),
    "BACKOFF_MAX": env.float("SAMPLING_BACKOFF_MAX", default=30.0),
    # A running generation's claim; renewed while text streams in. A redelivered task waits for
    # it to lapse before taking the generation over, so one generation never runs twice at once.
    "LEASE_SECONDS": env.float("SAMPLING_LEASE_SECONDS", default=30.0),
    # How often partial text is written for readers while a response streams in.
    "FLUSH_INTERVAL": env.float("SAMPLING_FLUSH_INTERVAL", default=0.25),
    # The gap between the two temperatures when one variant is sampled twice.
    "MIN_TEMPERATURE_GAP": env.float("SAMPLING_MIN_TEMPERATURE_GAP", default=0.3),
}
# A variant that cannot answer leaves pairing by itself and comes back when it answers
# (modelserving/availability.py): every CHECK_EVERY s beat probes each one; once FAILURE_MIN of its
# generations finished within FAILURE_WINDOW s (since it last came back), a FAILURE_SHARE of failed
# ones takes it out too. Out, it is probed after RETRY_AFTER s, then twice as long each failed
# probe, at most RETRY_MAX (half-open).
VARIANT_HEALTH = {
    "CHECK_EVERY": env.float("VARIANT_CHECK_EVERY", default=10.0),
    "FAILURE_WINDOW": env.float("VARIANT_FAILURE_WINDOW", default=300.0),
    "FAILURE_MIN": env.int("VARIANT_FAILURE_MIN", default=4),
    "FAILURE_SHARE": env.float("VARIANT_FAILURE_SHARE", default=0.5),
    "RETRY_AFTER": env.float("VARIANT_RETRY_AFTER", default=5.0),
    "RETRY_MAX": env.float("VARIANT_RETRY_MAX", default=60.0),
}

# --- The default model ----------------------------------------------------------------------
DEFAULT_MODEL_DIR = Path(
    env.str("DEFAULT_MODEL_DIR", default=str(VAR_DIR / "models" / "smollm2-135m-instruct"))
)
DEFAULT_MODEL_PORT = env.int("DEFAULT_MODEL_PORT", default=8001)
# New policy variants from training: "local" starts a model server for the checkpoint on this
# machine (the embedded set-up); "external" shows the `vllm serve` command and takes its URL.
POLICY_SERVING = env.str("POLICY_SERVING", default="local")
LOCAL_SERVE_THREADS = env.int("LOCAL_SERVE_THREADS", default=1)
# The engine of local model servers (make run's variants, checkpoints served from the dashboard):
# auto (vLLM's CPU build where it runs and `make vllm` installed it, else `transformers serve`),
# vllm (refused where it cannot run) or transformers. modelserving/engines.py decides.
LOCAL_MODEL_ENGINE = env.str("LOCAL_MODEL_ENGINE", default="auto")
VLLM_VENV = Path(env.str("VLLM_VENV", default=str(BASE_DIR / ".venv-vllm")))
VLLM_KV_CACHE_GIB = env.float("VLLM_KV_CACHE_GIB", default=1.0)  # per vLLM server (VLLM_CPU_KVCACHE_SPACE)
VLLM_MAX_MODEL_LEN = env.int("VLLM_MAX_MODEL_LEN", default=4096)
# A local model server Tandem starts for a served checkpoint: how often the activation task looks
# whether it answers yet, and how long it may take to load before it is stopped (seconds).
LOCAL_SERVE_POLL = env.float("LOCAL_SERVE_POLL", default=1.0)
LOCAL_SERVE_START_TIMEOUT = env.float("LOCAL_SERVE_START_TIMEOUT", default=180.0)
