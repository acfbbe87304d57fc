"""Loading a model directory the way a hub model is loaded, with clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

from pipeline.errors import PipelineError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")


def check_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise PipelineError(f"model directory {path} does not exist")
    if not (path / "config.json").exists():
        raise PipelineError(f"model directory {path} has no config.json")
    if not any((path / f).exists() for f in WEIGHT_FILES):
        raise PipelineError(f"model directory {path} has no weights (looked for {', '.join(WEIGHT_FILES)})")
    if not any((path / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise PipelineError(f"model directory {path} has no tokenizer (tokenizer.json / tokenizer_config.json)")
    return path


def load_model_and_tokenizer(path: str | Path, trust_remote_code: bool = False):
    """``from_pretrained`` for both; remote code stays off unless the config opts in."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(path)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust_remote_code)
    return model, tokenizer


def save_model_atomically(model, tokenizer, out: str | Path) -> None:
    """``save_pretrained`` into a temporary sibling, then rename: a model directory is
    complete or absent, never half-written."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
