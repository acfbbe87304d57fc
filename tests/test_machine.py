"""Where numbers were computed: recorded by the stages (SFT metrics, samples' Parquet metadata,
the trainer's timings) and listed in the report, so two runs from different kinds of machine
are told apart by their files."""

import json
import os
import platform
import subprocess
import sys

import pandas as pd
import pytest
import torch

from pipeline import io, machine
from pipeline.cli import main
from pipeline.report.report import machines_section, recorded_machines

@pytest.fixture(scope="module")
def suite_file(tmp_path_factory):
    from pipeline.data.schema import problems_frame
    from pipeline.toy.world import generate_problems

    path = tmp_path_factory.mktemp("data") / "suite.parquet"
    problems_frame(generate_problems(5, [1, 2], 6, "s")).to_parquet(path)
    return path


EPYC = {"cpu": "AMD EPYC", "cpu_kernels": "AVX512", "torch": "2.13.0+cpu", "transformers": "5.25.0"}


def test_describe_names_the_kernels_torch_dispatches_to():
    info = machine.describe(extra_field="x")
    assert info["cpu_kernels"] == torch.backends.cpu.get_cpu_capability()
    assert info["torch"] == torch.__version__ and info["cpu"] and info["extra_field"] == "x"
    assert info["cpu_fingerprint"] == machine.cpu_fingerprint()
    assert machine.label(EPYC) == "AMD EPYC · CPU kernels AVX512 · torch 2.13.0+cpu · transformers 5.25.0"
    assert machine.label({**EPYC, "cpu_fingerprint": "0123456789ab"}) == (
        "AMD EPYC · CPU kernels AVX512 (fingerprint 0123456789ab) · torch 2.13.0+cpu · transformers 5.25.0")
    assert machine.label({**EPYC, "gpu": "NVIDIA H100", "vllm": "0.11"}).startswith("AMD EPYC · CPU kernels AVX512 · NVIDIA H100 ·")


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or torch.backends.cpu.get_cpu_capability() == "DEFAULT",
                    reason="AVX2 kernels exist on x86-64 only")
def test_forcing_avx2_kernels_is_recorded():
    """ATEN_CPU_CAPABILITY=avx2 (how this project reran its study as an AVX2 machine would) is
    what the recorded machine then says."""
    assert _describe_in_subprocess(ATEN_CPU_CAPABILITY="avx2")["cpu_kernels"] == "AVX2"


def _describe_in_subprocess(**env: str) -> dict:
    """machine.describe() in a fresh interpreter with ``env`` added (torch reads these at import)."""
    out = subprocess.run([sys.executable, "-c", "import json; from pipeline import machine; print(json.dumps(machine.describe()))"],
                         capture_output=True, text=True, env={**os.environ, **env}, check=True).stdout
    return json.loads(out)


def test_cpu_fingerprint_is_the_same_in_every_process_and_context():
    here = machine.cpu_fingerprint()
    assert len(here) == 12 and int(here, 16) >= 0
    threads = torch.get_num_threads()
    with torch.inference_mode():  # as the sampler calls it
        assert machine.cpu_fingerprint() == here
    with torch.no_grad():
        assert machine.cpu_fingerprint() == here
    assert torch.get_num_threads() == threads  # its one thread is given back
    assert _describe_in_subprocess()["cpu_fingerprint"] == here
    # it runs on one thread whatever the job's thread count, so a job's threads do not change it
    assert _describe_in_subprocess(OMP_NUM_THREADS="2")["cpu_fingerprint"] == here


@pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT",
                    reason="this CPU already runs torch's scalar kernels: there is no other path to force")
def test_cpu_fingerprint_tells_kernel_paths_apart():
    """torch's scalar kernels (ATEN_CPU_CAPABILITY=default, available on every CPU) round
    differently from the vectorised ones this CPU runs, and the fingerprint says so; a failure
    here means the fingerprint would call two kinds of machine alike."""
    forced = _describe_in_subprocess(ATEN_CPU_CAPABILITY="default")
    assert forced["cpu_kernels"] == "DEFAULT"
    assert forced["cpu_fingerprint"] != machine.cpu_fingerprint()


def test_parquet_metadata_round_trip_and_files_without_it(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})
    io.write_parquet(tmp_path / "plain.parquet", frame)
    io.write_parquet(tmp_path / "tagged.parquet", frame, {machine.PARQUET_KEY: json.dumps([EPYC]).encode()})
    assert machine.from_parquet(tmp_path / "plain.parquet") == []
    assert machine.from_parquet(tmp_path / "tagged.parquet") == [EPYC]
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "tagged.parquet"), frame)  # the rows are untouched
    # deterministic bytes, with and without metadata
    io.write_parquet(tmp_path / "again.parquet", frame, {machine.PARQUET_KEY: json.dumps([EPYC]).encode()})
    assert (tmp_path / "again.parquet").read_bytes() == (tmp_path / "tagged.parquet").read_bytes()


def test_samples_record_their_machine_and_keep_a_cached_shards_own(tmp_path, tiny_model_dir, suite_file):
    from pipeline.sampling import stage

    def job(out):
        return main(["sample", "--model", str(tiny_model_dir), "--problems", str(suite_file), "--n", "2", "--seed", "1",
                     "--out", str(out), "--shard-prompts", "2",
                     "--sampling-json", json.dumps({"backend": "hf", "temperature": 1.0, "top_p": 1.0, "top_k": 0,
                                                    "max_new_tokens": 8, "batch_size": 8}),
                     "--template", "{problem}\n"])

    out = tmp_path / "samples.parquet"
    assert job(out) == 0
    here = machine.describe()
    assert machine.from_parquet(out) == [here]
    # one cached shard was sampled on another machine: the assembled file names both
    parts = sorted(stage.parts_dir(out).glob("part-*.parquet"))
    assert len(parts) >= 2
    io.write_parquet(parts[0], pd.read_parquet(parts[0]), stage.machine_metadata([{**here, "cpu_kernels": "AVX2"}]))
    assert job(out) == 0
    assert machine.from_parquet(out) == [{**here, "cpu_kernels": "AVX2"}, here]


def test_report_lists_machines_per_stage_and_flags_a_mix(tmp_path):
    sft = tmp_path / "sft_metrics.json"
    sft.write_text(json.dumps({"seconds": 1.0, "machine": EPYC}))
    old_sft = tmp_path / "old_sft_metrics.json"
    old_sft.write_text(json.dumps({"seconds": 1.0}))
    samples = []
    for i, kernels in enumerate(["AVX512", "AVX512", "AVX2"]):
        path = tmp_path / f"s{i}.parquet"
        io.write_parquet(path, pd.DataFrame({"a": [i]}), {machine.PARQUET_KEY: json.dumps([{**EPYC, "cpu_kernels": kernels}]).encode()})
        samples.append(path)
    assert recorded_machines(sft) == [EPYC] and recorded_machines(old_sft) == []
    text = machines_section([sft, old_sft, *samples])
    assert "| base model (SFT) | AMD EPYC · CPU kernels AVX512 · torch 2.13.0+cpu · transformers 5.25.0 | 1 |" in text
    assert "| evaluation sampling | AMD EPYC · CPU kernels AVX512 · torch 2.13.0+cpu · transformers 5.25.0 | 2 |" in text
    assert "| evaluation sampling | AMD EPYC · CPU kernels AVX2 · torch 2.13.0+cpu · transformers 5.25.0 | 1 |" in text
    assert "**Mixed machines**" in text and "(AVX2, AVX512: fingerprints, or the instruction set" in text
    assert "1 of 5 files were written before machines were recorded" in text
    assert "Mixed" not in machines_section([sft, samples[0]])
    # the same instruction set but kernels that round differently (e.g. another CPU vendor's MKL path)
    for i, fp in enumerate(["aaaaaaaaaaaa", "bbbbbbbbbbbb"]):
        io.write_parquet(tmp_path / f"f{i}.parquet", pd.DataFrame({"a": [i]}),
                         {machine.PARQUET_KEY: json.dumps([{**EPYC, "cpu_fingerprint": fp}]).encode()})
    text = machines_section([tmp_path / "f0.parquet", tmp_path / "f1.parquet"])
    assert "**Mixed machines**" in text and "(aaaaaaaaaaaa, bbbbbbbbbbbb:" in text
    assert "Mixed" not in machines_section([tmp_path / "f0.parquet", tmp_path / "f0.parquet"])
    with pytest.raises(Exception, match="neither an SFT metrics"):
        recorded_machines(tmp_path / "x.csv")
