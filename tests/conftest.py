import os

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
