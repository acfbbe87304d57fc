"""Reliability: resumable training and sampling, determinism, atomic outputs, clear errors.

Interruptions are real where that is cheap: SIGKILL and SIGTERM of real trainer
processes, a kill in the middle of writing a checkpoint, writes failing on a real file
size limit (RLIMIT_FSIZE). Where a failure has to land at an exact point, one of our own
functions is wrapped (the wrapper calls the real one): ``pipeline.io._write_chunk``, the
single low-level write, or a trainer function that then signals the process.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline import io
from pipeline.cli import main
from pipeline.config import method_specs
from pipeline.data.schema import problems_frame
from pipeline.errors import PipelineError
from pipeline.models import save_model_atomically
from pipeline.rl import checkpoints, methods, registry, trainer
from pipeline.sampling import stage
from pipeline.sampling.hf import HFSampler
from pipeline.toy.world import generate_problems

ROOT = Path(__file__).resolve().parents[1]
TRAINING = {
    "rollouts": 3, "prompts_per_rollout": 4, "group_size": 4, "minibatch_prompts": 2, "epochs": 1,
    "lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "temperature": 1.0, "top_p": 1.0,
    "max_new_tokens": 16, "entropy_chunk_size": None,
}
SAMPLING = {"temperature": 0.6, "top_p": 0.95, "top_k": 0, "max_new_tokens": 24, "batch_size": 12, "backend": "hf", "dtype": "float32"}


def subprocess_env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "suite.parquet"
    problems_frame(generate_problems(5, [1, 2], 10, "s")).to_parquet(path)
    return path


def train_args(model_dir, train_file, out: Path, method: str, entry=None, rollouts=3, every=1) -> list[str]:
    spec = method_specs({"methods": {method: entry or {}}, "training": {**TRAINING, "rollouts": rollouts}})[method]
    return [
        "train", "--base-model", str(model_dir), "--train-problems", str(train_file),
        "--method-json", json.dumps(spec), "--seed", "3", "--template", "{problem}\n",
        "--out-model", str(out / "model"), "--metrics", str(out / "metrics.jsonl"),
        "--checkpoint-dir", str(out / "ckpt"), "--checkpoint-every", str(every),
    ]


def weights(model_dir: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(model_dir / "model.safetensors")


def assert_same_run(out: Path, reference: Path) -> None:
    assert (out / "metrics.jsonl").read_bytes() == (reference / "metrics.jsonl").read_bytes()
    a, b = weights(out / "model"), weights(reference / "model")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not [p.name for p in (out / "ckpt").iterdir() if p.name.startswith(".")]  # no temp leftovers


# --------------------------------------------------------------------------- atomic writes, disk full


def failing_write(after_bytes: int):
    """``_write_chunk`` that writes ``after_bytes`` for real, then fails like a full disk."""
    real = io._write_chunk
    written = [0]

    def write(fd, data):
        room = after_bytes - written[0]
        if room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = real(fd, data[:room])
        written[0] += n
        return n

    return write


WRITERS = {
    "text": lambda p: io.write_text(p, "x" * 5000),
    "json": lambda p: io.write_json(p, {"values": list(range(2000))}),
    "parquet": lambda p: io.write_parquet(p, pd.DataFrame({"a": range(5000), "t": [f"row {i}" for i in range(5000)]})),
    "png": lambda p: _write_png(p),
}


def _write_png(path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot(range(100), [i * i for i in range(100)])
    with io.atomic_stream(path, suffix=".png") as fh:
        fig.savefig(fh, format="png")
    plt.close(fig)


@pytest.mark.parametrize("kind", sorted(WRITERS))
@pytest.mark.parametrize("existing", [False, True])
def test_out_of_disk_leaves_no_partial_output(tmp_path, monkeypatch, kind, existing):
    target = tmp_path / "out" / f"result.{kind}"
    if existing:
        target.parent.mkdir()
        target.write_text("previous complete version")
    monkeypatch.setattr(io, "_write_chunk", failing_write(1000))
    with pytest.raises(PipelineError) as err:
        WRITERS[kind](target)
    message = str(err.value)
    assert f"cannot write {target}: No space left on device" in message and "\n" not in message
    assert sorted(p.name for p in target.parent.iterdir()) == ([target.name] if existing else [])  # no temp file
    if existing:
        assert target.read_text() == "previous complete version"
    monkeypatch.undo()
    WRITERS[kind](target)  # with room again, the same call succeeds
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


def test_checkpoint_write_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(64, 64)
    state = {"rollout": 1, "update": 2, "policy": model.state_dict(), "partial": None}
    first = checkpoints.save_checkpoint(tmp_path, state, '{"update": 0}\n{"update": 1}\n', keep=2)
    monkeypatch.setattr(io, "_write_chunk", failing_write(4096))
    with pytest.raises(PipelineError, match="No space left on device"):
        checkpoints.save_checkpoint(tmp_path, {**state, "rollout": 2, "update": 4}, "", keep=2)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == [first.name]
    loaded = checkpoints.load_latest_checkpoint(tmp_path)
    assert loaded.path == first and loaded.metrics == '{"update": 0}\n{"update": 1}\n'
    assert torch.equal(loaded.state["policy"]["weight"], model.weight.detach())


FSIZE_SCRIPT = r"""
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a write past the limit fails with EFBIG
model_dir, problems, out = sys.argv[1:4]
from pipeline.cli import main
from pipeline.errors import PipelineError
from pipeline.models import load_model_and_tokenizer, save_model_atomically
model, tok = load_model_and_tokenizer(model_dir)
resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.RLIM_INFINITY))
rc = main(["sample", "--model", model_dir, "--problems", problems, "--n", "4", "--sampling-json", sys.argv[4],
           "--template", "{problem}\n", "--seed", "1", "--out", out + "/samples.parquet", "--shard-prompts", "100"])
try:
    save_model_atomically(model, tok, out + "/model")
    saved = "saved"
except PipelineError as err:
    saved = str(err)
print(json.dumps({"rc": rc, "saved": saved}))
"""


def test_a_real_write_limit_fails_cleanly_with_one_line(tmp_path, tiny_model_dir, suite_file):
    """RLIMIT_FSIZE makes the kernel refuse writes (EFBIG), as a full disk would (ENOSPC):
    the sample stage exits 2 with one line naming the file; a model directory is not left
    half-written; nothing temporary remains."""
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run(
        [sys.executable, "-c", FSIZE_SCRIPT, str(tiny_model_dir), str(suite_file), str(out), json.dumps(SAMPLING)],
        capture_output=True, text=True, timeout=120, env=subprocess_env(),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["rc"] == 2
    error_lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1 and "File too large" in error_lines[0] and "samples.parquet.parts" in error_lines[0]
    assert result["saved"].startswith(f"cannot write {out / 'model'}: ") and "File too large" in result["saved"]
    assert [p.name for p in out.iterdir()] == ["samples.parquet.parts"]  # no output, no model dir
    assert list((out / "samples.parquet.parts").iterdir()) == []  # the failed part left no temp file


def test_model_directory_replaced_atomically(tmp_path, tiny_model_dir):
    from pipeline.models import load_model_and_tokenizer

    model, tok = load_model_and_tokenizer(tiny_model_dir)
    out = tmp_path / "m"
    (tmp_path / ".m.123.tmp").mkdir()  # left by a killed writer
    save_model_atomically(model, tok, out)
    save_model_atomically(model, tok, out)  # over an existing one
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]
    load_model_and_tokenizer(out)


# --------------------------------------------------------------------------- checkpoint integrity


def small_state(rollout, update, value=1.0):
    return {"rollout": rollout, "update": update, "policy": {"w": torch.full((4,), value)}, "partial": None}


def test_only_complete_intact_checkpoints_of_this_run_are_loaded(tmp_path):
    ckpt = tmp_path
    good = checkpoints.save_checkpoint(ckpt, {**small_state(1, 2), "run": "A"}, "m1\n", keep=5)
    later = checkpoints.save_checkpoint(ckpt, {**small_state(2, 4, 2.0), "run": "A"}, "m2\n", keep=5)
    assert checkpoints.load_latest_checkpoint(ckpt, "A").path == later
    # a crash while writing: a half-written temp dir and a directory without COMPLETE
    (ckpt / ".tmp-step-000005.x").mkdir()
    (ckpt / ".tmp-step-000005.x" / "state.pt").write_bytes(b"PK\x03\x04 half")
    shutil.copytree(later, ckpt / "step-000004")
    (ckpt / "step-000004" / checkpoints.MARKER).unlink()
    # a checkpoint whose state.pt was truncated, one with a flipped byte, one with a bad marker
    shutil.copytree(later, ckpt / "step-000003")
    data = (later / "state.pt").read_bytes()
    (ckpt / "step-000003" / "state.pt").write_bytes(data[: len(data) // 2])
    shutil.copytree(later, ckpt / "step-000002-u00000005")
    flipped = bytearray(data)
    flipped[len(flipped) // 2] ^= 0xFF
    (ckpt / "step-000002-u00000005" / "state.pt").write_bytes(bytes(flipped))
    shutil.copytree(later, ckpt / "step-000002-u00000006")
    (ckpt / "step-000002-u00000006" / checkpoints.MARKER).write_text("{not json")
    loaded = checkpoints.load_latest_checkpoint(ckpt, "A")
    assert loaded.path == later and loaded.metrics == "m2\n" and loaded.state["policy"]["w"][0] == 2.0
    # checkpoints past a shortened run's end, and another run configuration's, are removed
    assert checkpoints.load_latest_checkpoint(ckpt, "A", max_rollout=1).path == good and not later.exists()
    assert checkpoints.load_latest_checkpoint(ckpt, "B") is None
    assert not later.exists() and not good.exists()


def test_pruning_keeps_the_newest_complete_checkpoints(tmp_path):
    for r in range(1, 5):
        checkpoints.save_checkpoint(tmp_path, small_state(r, 2 * r), "", keep=2)
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path)] == ["step-000003", "step-000004"]


def test_a_non_finite_state_is_never_checkpointed(tmp_path):
    checkpoints.save_checkpoint(tmp_path, small_state(1, 2), "", keep=2)
    with pytest.raises(checkpoints.NonFiniteError, match=r"state\.policy\.w"):
        checkpoints.save_checkpoint(tmp_path, small_state(2, 4, float("nan")), "", keep=2)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000001"]


# --------------------------------------------------------------------------- training: kill, preempt, resume


PPO = ("ppo", {"estimator": {"critic_warmup_rollouts": 1}})  # critic, values and returns in every checkpoint


@pytest.fixture(scope="module")
def reference_runs(tmp_path_factory, tiny_model_dir, train_file):
    """Uninterrupted runs, the yardstick of every interrupted one."""
    root = tmp_path_factory.mktemp("reference")
    runs = {}
    for name, (method, entry, rollouts) in {"ppo": (*PPO, 3), "aer": ("grpo_aer", None, 4)}.items():
        assert main(train_args(tiny_model_dir, train_file, root / name, method, entry, rollouts=rollouts)) == 0
        runs[name] = root / name
    return runs


@pytest.mark.parametrize(
    "signal_at, checkpoint",
    [
        (1, "step-000000"),  # while sampling rollout 0: interrupted at once, its start is saved
        (2, "step-000000-u00000001"),  # during update 0: it finishes, mid-rollout checkpoint
        (3, "step-000001"),  # during the rollout's last update: the rollout ends, boundary checkpoint
        (5, "step-000001-u00000003"),  # during update 2 of rollout 1
    ],
)
def test_sigterm_finishes_the_update_checkpoints_and_resumes_exactly(
    tmp_path, tiny_model_dir, train_file, reference_runs, monkeypatch, signal_at, checkpoint
):
    calls = [0]
    real = trainer.policy_logp_entropy

    def signalling(*args, **kwargs):  # one forward pass per rollout (no grad), then one per update
        calls[0] += 1
        if calls[0] == signal_at:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "policy_logp_entropy", signalling)
    handler = signal.getsignal(signal.SIGTERM)
    # checkpoints every 10 rollouts: what is saved here is the SIGTERM checkpoint alone
    args = train_args(tiny_model_dir, train_file, tmp_path, *PPO, every=10)
    assert main(args) == checkpoints.PREEMPTED_EXIT_CODE
    assert signal.getsignal(signal.SIGTERM) == handler  # the trainer's handler is uninstalled
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path / "ckpt")] == [checkpoint]
    assert not (tmp_path / "model").exists()
    monkeypatch.undo()
    assert main(args) == 0
    assert_same_run(tmp_path, reference_runs["ppo"])


KILL_DURING_CHECKPOINT = r"""
import os, sys, time
from pipeline import io
real = io._write_chunk
def write(fd, data):
    n = real(fd, data)
    if ".tmp-step-000002." in os.readlink(f"/proc/self/fd/{fd}"):
        open(sys.argv[1], "w").close()   # tell the test we are inside the checkpoint write
        time.sleep(600)
    return n
io._write_chunk = write
from pipeline.cli import main
raise SystemExit(main(sys.argv[2:]))
"""


def wait_for(predicate, proc, timeout=120.0) -> bool:
    """True once ``predicate()`` holds; False if the trainer finished first (exit 0)."""
    deadline = time.time() + timeout
    while not predicate():
        if proc.poll() is not None:
            assert proc.returncode == 0, f"trainer failed ({proc.returncode}): {proc.stderr.read()[-2000:]}"
            return False
        if time.time() > deadline:
            proc.kill()
            raise AssertionError("timed out")
        time.sleep(0.005)
    return True


def test_sigkill_at_random_points_and_during_a_checkpoint_write_loses_nothing(
    tmp_path, tiny_model_dir, train_file, reference_runs
):
    args = train_args(tiny_model_dir, train_file, tmp_path, "grpo_aer", rollouts=4)
    ckpt, live = tmp_path / "ckpt", tmp_path / "ckpt" / "metrics.jsonl"

    def lines():
        return live.read_text().count("\n") if live.exists() else 0

    # 1. SIGKILL in the middle of writing checkpoint step-000002 (deterministically inside it)
    flag = tmp_path / "inside-checkpoint"
    proc = subprocess.Popen([sys.executable, "-c", KILL_DURING_CHECKPOINT, str(flag), *args],
                            stderr=subprocess.PIPE, text=True, env=subprocess_env())
    assert wait_for(flag.exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in checkpoints.list_checkpoints(ckpt)] == ["step-000001"]
    half = [p for p in ckpt.iterdir() if p.name.startswith(".tmp-step-000002.")]
    assert len(half) == 1 and not (half[0] / checkpoints.MARKER).exists()  # the half-written checkpoint
    # 2. plus what a crash on a filesystem without atomic rename could leave: a newer
    #    directory holding a valid state.pt but no COMPLETE, and one with a truncated state.pt
    newest = checkpoints.list_checkpoints(ckpt)[-1]
    assert newest.name == "step-000001"
    shutil.copytree(newest, ckpt / "step-000004")
    (ckpt / "step-000004" / checkpoints.MARKER).unlink()
    shutil.copytree(newest, ckpt / "step-000003")
    with open(ckpt / "step-000003" / "state.pt", "r+b") as fh:
        fh.truncate(1000)
    # 3. SIGKILL at random points (a seeded choice: after 1-3 more updates plus a random delay)
    rng = random.Random(1234)
    for _ in range(2):
        target = lines() + rng.randint(1, 3)
        proc = subprocess.Popen([sys.executable, "-m", "pipeline", *args], stderr=subprocess.PIPE, text=True,
                                env=subprocess_env(), cwd=ROOT)
        if wait_for(lambda: lines() >= target, proc):
            time.sleep(rng.uniform(0.0, 0.15))
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    # 4. the final restart finishes; the result is the uninterrupted run's, bit for bit
    assert main(args) == 0
    assert_same_run(tmp_path, reference_runs["aer"])
    final = checkpoints.list_checkpoints(ckpt)
    assert [p.name for p in final] == ["step-000003", "step-000004"]
    assert all(checkpoints.verify_checkpoint(p)["rollout"] == int(p.name[5:]) for p in final)


# --------------------------------------------------------------------------- training: nan/inf stops


@pytest.mark.parametrize(
    "inject, expected",
    [
        ("advantages", r"non-finite advantages at rollout 1 \(before update 2\): 1 nan and 0 inf among"),
        ("loss", r"non-finite loss \(nan\) at rollout 1, update 2 \(pg_loss nan, reg_term 0\.0\)"),
    ],
)
def test_non_finite_values_stop_with_the_step_and_keep_the_last_good_checkpoint(
    tmp_path, tiny_model_dir, train_file, monkeypatch, capsys, inject, expected
):
    calls = [0]
    if inject == "advantages":
        real = registry.lookup("estimator", "grpo")

        def estimator(*args, **kwargs):
            adv, ret = real(*args, **kwargs)
            calls[0] += 1
            if calls[0] == 2:  # rollout 1
                adv = adv.clone()
                adv[0, 0] = float("nan")
            return adv, ret

        monkeypatch.setitem(methods.REGISTRY["estimator"], "grpo", dataclasses.replace(methods.component("estimator", "grpo"), function=estimator))
    else:
        real = registry.lookup("loss", "clip")

        def loss(*args, **kwargs):
            value, stats = real(*args, **kwargs)
            calls[0] += 1
            return (value * float("nan"), stats) if calls[0] == 3 else (value, stats)

        monkeypatch.setitem(methods.REGISTRY["loss"], "clip", dataclasses.replace(methods.component("loss", "clip"), function=loss))
    assert main(train_args(tiny_model_dir, train_file, tmp_path, "grpo")) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: ")
    assert re.search(expected, err), err
    assert f"the last good checkpoint {tmp_path / 'ckpt' / 'step-000001'} is kept" in err
    assert [p.name for p in checkpoints.list_checkpoints(tmp_path / "ckpt")] == ["step-000001"]
    state = checkpoints.load_latest_checkpoint(tmp_path / "ckpt").state
    assert all(torch.isfinite(v).all() for v in state["policy"].values())
    assert not (tmp_path / "model").exists() and not (tmp_path / "metrics.jsonl").exists()


def test_diverging_weights_stop_before_the_next_step(tmp_path, tiny_model_dir, train_file, capsys):
    args = train_args(tiny_model_dir, train_file, tmp_path, "grpo", {"training": {"lr": float("inf")}})
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "non-finite policy parameters after rollout 0, update 0" in err and "no checkpoint had been written" in err
    assert checkpoints.list_checkpoints(tmp_path / "ckpt") == []


# --------------------------------------------------------------------------- sampling: shards, resume, determinism


def sample_args(model_dir, problems, out, seed=1) -> list[str]:
    return [
        "sample", "--model", str(model_dir), "--problems", str(problems), "--n", "4",
        "--sampling-json", json.dumps(SAMPLING), "--template", "{problem}\n", "--seed", str(seed),
        "--out", str(out), "--shard-prompts", "3",
    ]


def score_args(problems, samples, out: Path) -> list[str]:
    return [
        "score", "--problems", str(problems), "--samples", str(samples), "--model", "base", "--suite", "s",
        "--k-max", "4", "--bootstrap", "50", "--out-verdicts", str(out / "v.parquet"), "--out-passk", str(out / "p.json"),
    ]


def test_sampling_and_scoring_twice_give_identical_bytes(tmp_path, tiny_model_dir, suite_file):
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(sample_args(tiny_model_dir, suite_file, out / "samples.parquet")) == 0
        assert main(score_args(suite_file, out / "samples.parquet", out)) == 0
        # the finished shards stay as the suite's cache (a rerun with unchanged settings samples nothing)
        assert sorted(p.name for p in out.iterdir()) == ["p.json", "samples.parquet", "samples.parquet.parts", "v.parquet"]
    for name in ("samples.parquet", "v.parquet", "p.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    samples = pd.read_parquet(tmp_path / "a" / "samples.parquet")
    assert len(samples) == 40 and list(samples.columns) == list(stage.SAMPLE_COLUMNS)


def test_one_job_samples_several_suites_and_resamples_only_the_changed_one(tmp_path, tiny_model_dir, suite_file, caplog):
    import logging

    caplog.set_level(logging.INFO)
    cfg = SAMPLING

    def job(n_second):
        return main(["sample", "--model", str(tiny_model_dir), "--problems", str(suite_file), str(suite_file),
                     "--n", "4", str(n_second), "--seed", "1", "2", "--out", str(tmp_path / "a.parquet"),
                     str(tmp_path / "b.parquet"), "--cache-dir", str(tmp_path / "cache" / "a"), str(tmp_path / "cache" / "b"),
                     "--sampling-json", json.dumps(cfg), "--template", "{problem}\n"])

    assert job(4) == 0
    first = (tmp_path / "a.parquet").read_bytes()
    # the progress line a `tail -f` of the job's log shows (README "Watching a run")
    assert "sample a: shards: 4/4 (100%)" in caplog.text and "tokens/s" in caplog.text
    caplog.clear()
    assert job(2) == 0  # the second suite's n changed: only its shards are sampled again
    assert "a.parquet: 4 of 4 shards already sampled" in caplog.text and "(0 sampled now" in caplog.text
    assert (tmp_path / "a.parquet").read_bytes() == first
    assert len(pd.read_parquet(tmp_path / "b.parquet")) == 2 * len(pd.read_parquet(suite_file))


def fill_disk_at_part(monkeypatch, parts: Path, k: int) -> None:
    """The disk fills up while part ``k`` (1-based) is written."""
    count = [0]
    real = io.write_parquet

    def writer(path, frame, *args, **kwargs):
        if Path(path).parent == parts:
            count[0] += 1
            if count[0] == k:
                monkeypatch.setattr(io, "_write_chunk", failing_write(100))
        return real(path, frame, *args, **kwargs)

    monkeypatch.setattr(io, "write_parquet", writer)


def test_interrupted_sampling_resumes_by_shard_with_identical_samples(tmp_path, tiny_model_dir, suite_file, monkeypatch):
    reference = tmp_path / "reference.parquet"
    assert main(sample_args(tiny_model_dir, suite_file, reference)) == 0
    out = tmp_path / "out" / "samples.parquet"
    parts = stage.parts_dir(out)
    # an earlier job with other settings (seed 2) left two parts
    fill_disk_at_part(monkeypatch, parts, 3)
    assert main(sample_args(tiny_model_dir, suite_file, out, seed=2)) == 2
    monkeypatch.undo()
    other = sorted(p.name for p in parts.iterdir())
    assert len(other) == 2
    # this job (seed 1) is interrupted the same way: the disk fills up on its third of four shards
    fill_disk_at_part(monkeypatch, parts, 3)
    assert main(sample_args(tiny_model_dir, suite_file, out)) == 2
    monkeypatch.undo()
    mine = sorted(p.name for p in parts.iterdir())
    assert not out.exists() and len(mine) == 2 and not set(mine) & set(other)  # no temp file, no foreign part
    shutil.copy(reference, parts / "part-00002-0123456789abcdef.parquet")  # a stray file
    # the restart samples the two missing shards only, and the output is the uninterrupted one
    generated = []
    real_generate = HFSampler.generate

    def spy(self, prompts, params):
        generated.append(len(prompts))
        return real_generate(self, prompts, params)

    monkeypatch.setattr(HFSampler, "generate", spy)
    assert main(sample_args(tiny_model_dir, suite_file, out)) == 0
    assert generated == [3, 1]  # shards 2 (3 problems) and 3 (1 problem) of 10 problems
    assert out.read_bytes() == reference.read_bytes()
    assert sorted(p.name for p in out.parent.iterdir()) == ["samples.parquet", "samples.parquet.parts"]
    kept = sorted(p.name for p in parts.iterdir())  # the 4 shards of these settings stay as the cache, nothing else
    assert len(kept) == 4 and set(mine) <= set(kept) and not set(other) & set(kept) and "part-00002-0123456789abcdef.parquet" not in kept


def test_completed_shards_make_a_restart_skip_the_model(tmp_path, tiny_model_dir, suite_file, monkeypatch):
    """A job killed after its last part (before the concatenation) redoes only the concatenation."""
    out = tmp_path / "samples.parquet"
    real = io.write_parquet

    def fail_output(path, frame, *args, **kwargs):
        if Path(path) == out:
            raise KeyboardInterrupt  # stands in for a kill between the parts and the output
        return real(path, frame, *args, **kwargs)

    monkeypatch.setattr(stage.io, "write_parquet", fail_output)
    with pytest.raises(KeyboardInterrupt):
        main(sample_args(tiny_model_dir, suite_file, out))
    monkeypatch.undo()
    monkeypatch.setattr(stage, "make_sampler", lambda *a, **k: pytest.fail("no shard left to sample"))
    assert main(sample_args(tiny_model_dir, suite_file, out)) == 0
    assert len(pd.read_parquet(out)) == 40 and len(list(stage.parts_dir(out).iterdir())) == 4  # the shards stay (cache)


# --------------------------------------------------------------------------- clear errors on bad input


def _problems(tmp_path, mutate):
    frame = problems_frame(generate_problems(5, [1], 4, "s"))
    path = tmp_path / "problems.parquet"
    result = mutate(frame, path)
    if isinstance(result, pd.DataFrame):
        result.to_parquet(path, index=False)
    return path


def _null_answer(frame, path):
    frame = frame.astype({"answer": object})
    frame.loc[2, "answer"] = None
    return frame


BAD_PROBLEMS = {
    "missing file": (lambda f, p: None, "does not exist", "does not exist"),
    "not parquet": (lambda f, p: p.write_text("id,problem\n1,2\n"), "is not readable Parquet", "cannot read Parquet"),
    "missing column": (lambda f, p: f.drop(columns="answer"), "lacks column(s) answer; expected a Parquet file with columns",
                       "missing column 'answer'"),
    "duplicate ids": (lambda f, p: f.assign(id=["a", "b", "a", "c"]), "has duplicate id 'a'", "duplicate id 'a'"),
    "null answers": (_null_answer, "column 'answer' is null or empty in row 2", "column 'answer' has a null value (row 2)"),
}


@pytest.mark.parametrize("case", sorted(BAD_PROBLEMS))
@pytest.mark.parametrize("cli_stage", ["sample", "score"])
def test_bad_problem_files_stop_the_stage_with_one_specific_line(tmp_path, tiny_model_dir, capsys, case, cli_stage):
    mutate, sample_message, score_message = BAD_PROBLEMS[case]
    problems = _problems(tmp_path, mutate)
    samples = tmp_path / "samples.parquet"
    pd.DataFrame({"problem_id": ["s-00000"] * 4, "sample_index": range(4), "text": ["Answer: 1"] * 4,
                  "num_tokens": [3] * 4, "finish_reason": ["stop"] * 4}).to_parquet(samples)
    if cli_stage == "sample":
        rc = main(sample_args(tiny_model_dir, problems, tmp_path / "out.parquet"))
    else:
        rc = main(score_args(problems, samples, tmp_path))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1, err
    expected = sample_message if cli_stage == "sample" else score_message
    assert err[0].startswith("error: ") and str(problems) in err[0] and expected in err[0], err[0]


def test_bad_samples_file_names_the_file_and_column(tmp_path, suite_file, capsys):
    samples = tmp_path / "samples.parquet"
    pd.DataFrame({"problem_id": ["s-00000"], "sample_index": [0], "text": ["x"]}).to_parquet(samples)
    assert main(score_args(suite_file, samples, tmp_path)) == 2
    assert f"samples file {samples}: missing column 'num_tokens'" in capsys.readouterr().err


def _drop(*names):
    def mutate(d: Path):
        for n in names:
            (d / n).unlink()
    return mutate


BAD_MODELS = {
    "no directory": (lambda d: shutil.rmtree(d), "does not exist"),
    "no config.json": (_drop("config.json"), "has no config.json"),
    "corrupt config.json": (lambda d: (d / "config.json").write_text("{"), "config.json is not valid JSON"),
    "no weights": (_drop("model.safetensors"), "has no weights (looked for model.safetensors"),
    "corrupt weights": (lambda d: (d / "model.safetensors").write_bytes(b"\x00" * 64), "cannot load the model (SafetensorError"),
    "no tokenizer": (_drop("tokenizer.json", "tokenizer_config.json"), "has no tokenizer"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_directories_stop_sampling_with_one_specific_line(tmp_path, tiny_model_dir, suite_file, capsys, case):
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    mutate, expected = BAD_MODELS[case]
    mutate(model)
    assert main(sample_args(model, suite_file, tmp_path / "out.parquet")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: model directory {model}") and expected in err[0], err


def test_model_code_never_runs_unless_trusted(tmp_path, tiny_model_dir, suite_file, capsys):
    """A model directory shipping Python code (auto_map) is refused: the code is not executed."""
    model = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model)
    marker = tmp_path / "code-ran"
    (model / "evil.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from transformers import LlamaConfig, LlamaForCausalLM\n"
        "class EvilConfig(LlamaConfig):\n    model_type = 'evil'\n"
        "class EvilModel(LlamaForCausalLM):\n    config_class = EvilConfig\n"
    )
    config = json.loads((model / "config.json").read_text())
    config.update(model_type="evil", auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForCausalLM": "evil.EvilModel"})
    (model / "config.json").write_text(json.dumps(config))
    assert main(sample_args(model, suite_file, tmp_path / "out.parquet")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: model directory {model}: cannot load the model"), err
    assert "contains custom code" in err[0] and not marker.exists()
