import os
from pathlib import Path

import pytest
import torch

# Two torch processes x 2 threads on 2 cores run 3.5x slower each: tests use one thread.
torch.set_num_threads(1)
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """An untrained tiny Llama with the toy tokenizer, saved like a hub model."""
    from pipeline.toy.build import build_model
    from pipeline.toy.tokenizer import build_tokenizer

    path = tmp_path_factory.mktemp("tiny_model")
    tok = build_tokenizer(model_max_length=160)
    torch.manual_seed(0)
    arch = {"hidden_size": 32, "intermediate_size": 64, "num_layers": 2, "num_heads": 2, "max_positions": 160}
    model = build_model(arch, tok)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def train_file(tmp_path_factory):
    """A small RL training split (16 problems of difficulty 1-2) for the trainer tests."""
    from pipeline.data.schema import problems_frame
    from pipeline.toy.world import generate_problems

    path = tmp_path_factory.mktemp("data") / "train.parquet"
    problems_frame(generate_problems(0, [1, 2], 16, "t")).to_parquet(path)
    return path


def _rehearsal_source_key() -> str:
    """What the rehearsal model depends on: the rehearsal sources and torch (the same CPU build
    in .venv and .venv-vllm, so both test environments share one cached build)."""
    import hashlib

    h = hashlib.sha256(torch.__version__.encode())
    for f in sorted((Path(__file__).resolve().parents[1] / "rehearsal").glob("*.py")):
        h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()[:16]


@pytest.fixture(scope="session")
def tiny_model(request, tmp_path_factory):
    """The rehearsal's tiny Qwen2 "hub" model (rehearsal/tiny_model.py: bf16 on disk, Qwen2
    byte-level BPE, chat template, briefly SFT'd), built once and cached in pytest's cache
    directory by the source of rehearsal/ (the first build takes about two minutes of CPU)."""
    import shutil

    from rehearsal.tiny_model import build_tiny_model

    prebuilt = os.environ.get("TINY_QWEN2_DIR")  # built elsewhere (a GPU node with little time to spare)
    if prebuilt:
        if not (Path(prebuilt) / "model.safetensors").is_file():
            raise FileNotFoundError(f"TINY_QWEN2_DIR={prebuilt} holds no model.safetensors")
        return Path(prebuilt)
    cached = Path(request.config.cache.mkdir("rehearsal-tiny-model")) / f"seed0-{_rehearsal_source_key()}"
    if not (cached / "model.safetensors").is_file():
        build = tmp_path_factory.mktemp("tiny_model_build")
        build_tiny_model(build, seed=0, report=False)
        shutil.rmtree(cached, ignore_errors=True)
        shutil.copytree(build, cached)
    return cached
