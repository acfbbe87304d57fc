"""Loading a model directory the way a hub model is loaded, with clear errors."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from pipeline import io
from pipeline.errors import PipelineError

WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


def check_model_dir(path: str | Path) -> Path:
    """The directory, if it looks like a ``save_pretrained`` model; else a one-line PipelineError."""
    path = Path(path)
    if not path.is_dir():
        raise PipelineError(f"model directory {path} does not exist")
    config = path / "config.json"
    if not config.is_file():
        raise PipelineError(f"model directory {path} has no config.json")
    try:
        json.loads(config.read_text())
    except (OSError, ValueError) as err:
        raise PipelineError(f"model directory {path}: config.json is not valid JSON ({_first_line(err)})") from None
    if not any((path / f).is_file() for f in WEIGHT_FILES):
        raise PipelineError(f"model directory {path} has no weights (looked for {', '.join(WEIGHT_FILES)})")
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if (path / index).is_file():
            try:
                shards = sorted(set(json.loads((path / index).read_text())["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
                raise PipelineError(f"model directory {path}: {index} is not a valid weight index ({_first_line(err)})") from None
            missing = [s for s in shards if not (path / s).is_file()]
            if missing:
                raise PipelineError(f"model directory {path}: weight shard {missing[0]} listed in {index} is missing")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise PipelineError(f"model directory {path} has no tokenizer ({' / '.join(TOKENIZER_FILES)})")
    return path


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")


def load_model_and_tokenizer(path: str | Path, trust_remote_code: bool = False, dtype=None):
    """``from_pretrained`` for both; remote code stays off unless the config opts in.

    The weights are loaded as ``dtype``, **float32 unless asked otherwise** — never
    transformers' default ``"auto"``, which keeps a checkpoint's saved dtype: a hub model
    saved in bf16 would then train with bf16 master weights and bf16 AdamW moments, and
    at lr 1e-6 almost every update rounds away. Training wants fp32 master weights (bf16
    compute comes from autocast); a sampler on a GPU casts to bf16 itself.

    A directory that passes :func:`check_model_dir` but cannot be loaded (corrupt weights,
    a broken tokenizer file) gives a one-line PipelineError naming the directory.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = check_model_dir(path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except Exception as err:  # noqa: BLE001 - transformers raises many types for a bad directory
        raise PipelineError(f"model directory {path}: cannot load the tokenizer ({_first_line(err)})") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(
            path, trust_remote_code=trust_remote_code, dtype=torch.float32 if dtype is None else dtype
        )
    except Exception as err:  # noqa: BLE001
        raise PipelineError(f"model directory {path}: cannot load the model ({_first_line(err)})") from None
    return model, tokenizer


def context_length(path: str | Path) -> int | None:
    """The model's context window (``max_position_embeddings`` of its config.json), if it says."""
    try:
        value = json.loads((Path(path) / "config.json").read_text()).get("max_position_embeddings")
    except (OSError, ValueError):
        return None
    return int(value) if isinstance(value, int) and value > 0 else None


def check_context_budget(
    model_dir: str | Path, longest_prompt: int, max_new_tokens: int, max_model_len: int | None = None, where: str = ""
) -> int:
    """Refuse, before any work, a protocol the model's context cannot hold; return the
    context the engine needs (``max_model_len``, or prompt + response budget).

    vLLM refuses ``max_model_len`` above the model's ``max_position_embeddings`` (e.g.
    Qwen2.5-Math-7B: 4096), and a prompt plus ``max_new_tokens`` beyond it would be cut
    short or run past the positions the model was trained on.
    """
    limit = context_length(model_dir)
    need = longest_prompt + max_new_tokens
    prefix = f"{where}: " if where else ""
    if max_model_len is not None:
        if limit is not None and max_model_len > limit:
            raise PipelineError(
                f"{prefix}max_model_len {max_model_len} exceeds the model's context of {limit} tokens "
                f"(max_position_embeddings in {Path(model_dir) / 'config.json'})"
            )
        if need > max_model_len:
            raise PipelineError(
                f"{prefix}the longest prompt ({longest_prompt} tokens) + max_new_tokens ({max_new_tokens}) = {need} "
                f"exceeds max_model_len {max_model_len}"
            )
        return max_model_len
    if limit is not None and need > limit:
        raise PipelineError(
            f"{prefix}the longest prompt ({longest_prompt} tokens) + max_new_tokens ({max_new_tokens}) = {need} "
            f"exceeds the model's context of {limit} tokens (max_position_embeddings in {Path(model_dir) / 'config.json'})"
        )
    return need


def model_fingerprint(path: str | Path) -> dict:
    """What identifies a model directory's contents cheaply: its resolved path, config.json
    and every top-level file's size and modification time (a rebuilt model differs)."""
    path = Path(path).resolve()
    files = sorted(f for f in path.iterdir() if f.is_file() and not f.name.startswith("."))
    return {
        "path": str(path),
        "config": io.file_sha256(path / "config.json"),
        "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in files],
    }


def save_model_atomically(model, tokenizer, out: str | Path) -> None:
    """``save_pretrained`` into a temporary sibling, fsync, then rename: a model directory is
    complete or absent, never half-written (a failed save leaves no temporary directory)."""
    out = Path(out)
    io.remove_stale_temps(out.parent, out.name)
    with io.atomic_dir(out) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        check_model_dir(tmp)


def fetch_base_model(out: str | Path, repo_id: str | None, revision: str | None, local_path: str | None) -> Path:
    """Materialise the base model in ``out``: a local directory is linked, a hub repository is
    downloaded at a pinned revision (``huggingface_hub.snapshot_download``)."""
    out = Path(out)
    io.remove_stale_temps(out.parent, out.name)
    if local_path:
        source = check_model_dir(local_path).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        # A symlink made under a temporary name, then renamed over ``out``: never half there.
        link = out.parent / f".{out.name}.{os.getpid()}.tmp"
        link.symlink_to(source, target_is_directory=True)
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        os.replace(link, out)
        io.fsync_dir(out.parent)
        return out
    if not repo_id or not revision:
        raise PipelineError("base_model.hub needs 'repo_id' and a pinned 'revision' (or a 'local_path')")
    from huggingface_hub import snapshot_download

    with io.atomic_dir(out) as tmp:
        snapshot_download(repo_id=repo_id, revision=revision, local_dir=tmp)
        check_model_dir(tmp)
    return out
