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


def fetch_base_model(out: str | Path, repo_id: str | None, revision: str | None, local_path: str | None) -> Path:
    """Materialise the base model in ``out``: a local directory is linked, a hub repository is
    downloaded at a pinned revision (``huggingface_hub.snapshot_download``)."""
    out = Path(out)
    if local_path:
        source = check_model_dir(local_path).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.is_symlink() or out.exists():
            out.unlink() if out.is_symlink() else shutil.rmtree(out)
        out.symlink_to(source, target_is_directory=True)
        return out
    if not repo_id or not revision:
        raise PipelineError("base_model.hub needs 'repo_id' and a pinned 'revision' (or a 'local_path')")
    from huggingface_hub import snapshot_download

    tmp = out.with_name(f".{out.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    snapshot_download(repo_id=repo_id, revision=revision, local_dir=tmp)
    check_model_dir(tmp)
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
