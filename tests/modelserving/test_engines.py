"""Which engine serves a local model (modelserving/engines.py): vLLM's CPU build where it runs and
is installed, else `transformers serve` with the reason; LOCAL_MODEL_ENGINE=vllm is refused where
vLLM cannot run, never quietly replaced."""

import pytest

from modelserving import engines
from modelserving.engines import TRANSFORMERS, VLLM, Engine, local_engine, serve_command, serve_environment


def _venv(tmp_path, *, installed: bool):
    venv = tmp_path / ".venv-vllm"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    if installed:
        (venv / ".installed").write_text("vLLM 0.32.0 installed in .venv-vllm\n")
    return venv


@pytest.fixture
def x86_avx2(monkeypatch):
    monkeypatch.setattr(engines.sys, "platform", "linux")
    monkeypatch.setattr(engines.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(engines, "_cpu_flags", lambda: {"sse4_2", "avx2"})


def test_vllm_serves_where_it_runs_and_is_installed(x86_avx2, tmp_path):
    chosen = local_engine("auto", venv=_venv(tmp_path, installed=True))
    assert chosen == Engine(VLLM, "vLLM 0.32.0 (.venv-vllm)")


def test_elsewhere_transformers_serve_serves_and_says_why(x86_avx2, monkeypatch, tmp_path):
    venv = _venv(tmp_path, installed=True)
    monkeypatch.setattr(engines, "_cpu_flags", lambda: {"sse4_2", "avx"})
    chosen = local_engine("auto", venv=venv)
    assert chosen.name == TRANSFORMERS
    assert chosen.why == "transformers serve, not vLLM: this CPU has no AVX2, the least vLLM's x86-64 CPU build runs on"
    monkeypatch.setattr(engines.platform, "machine", lambda: "riscv64")
    assert local_engine("auto", venv=venv).why.endswith("vLLM publishes no CPU build for riscv64")
    monkeypatch.setattr(engines.sys, "platform", "darwin")
    assert local_engine("auto", venv=venv).why.endswith("vLLM's CPU build runs on Linux only (this is darwin)")


def test_a_host_that_could_run_it_but_has_no_virtualenv_says_to_install_it(x86_avx2, tmp_path):
    for venv in (tmp_path / "nowhere", _venv(tmp_path, installed=False)):
        chosen = local_engine("auto", venv=venv)
        assert chosen.name == TRANSFORMERS and f"vLLM is not installed in {venv} (make vllm installs it)" in chosen.why


def test_asking_for_vllm_where_it_cannot_run_is_refused(x86_avx2, monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="LOCAL_MODEL_ENGINE=vllm, but vLLM is not installed"):
        local_engine("vllm", venv=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="must be one of auto, vllm, transformers"):
        local_engine("tgi", venv=tmp_path)
    assert local_engine("transformers", venv=_venv(tmp_path, installed=True)).name == TRANSFORMERS


def test_the_commands_serve_the_folder_under_its_path_on_loopback(tmp_path):
    vllm = serve_command(Engine(VLLM, ""), tmp_path / "model", port=8011, venv=tmp_path / "v", max_model_len=2048)
    assert vllm[:3] == [str(tmp_path / "v" / "bin" / "python"), "-m", "vllm.entrypoints.openai.api_server"]
    flags = {flag: vllm[i + 1] for i, flag in enumerate(vllm) if flag.startswith("--") and i + 1 < len(vllm)}
    assert flags["--model"] == flags["--served-model-name"] == str(tmp_path / "model")
    assert (flags["--host"], flags["--port"], flags["--max-model-len"]) == ("127.0.0.1", "8011", "2048")
    assert "--enforce-eager" in vllm
    hf = serve_command(Engine(TRANSFORMERS, ""), tmp_path / "model", port=8011)
    assert hf[1:3] == ["serve", str(tmp_path / "model")] and "--no-continuous-batching" in hf
    env = serve_environment(Engine(VLLM, ""), threads=1, kv_cache_gib=0.5)
    assert (env["VLLM_CPU_KVCACHE_SPACE"], env["VLLM_CPU_OMP_THREADS_BIND"], env["OMP_NUM_THREADS"]) == (
        "0.5", "nobind", "1")
    assert env["HF_HUB_OFFLINE"] == "1" and env["VLLM_NO_USAGE_STATS"] == "1"
    assert "VLLM_CPU_KVCACHE_SPACE" not in serve_environment(Engine(TRANSFORMERS, ""))


def test_this_machine_is_judged_by_its_own_cpu():
    # The same answer make gives before it installs vLLM (`python -m modelserving.engines`).
    flags = engines._cpu_flags()
    refusal = engines.host_refusal()
    if engines.platform.machine() == "x86_64" and engines.sys.platform.startswith("linux"):
        assert (refusal is None) == ("avx2" in flags)
