"""The dress rehearsal: every paper config through the real Snakefile, on this CPU machine.

``python -m rehearsal.run [--configs NAME ...] [--workdir results/rehearsal]`` (``make
rehearsal``). For each ``configs/paper/*.yaml`` it writes the paper config with the overlay of
``rehearsal/overlay.yaml`` — sizes only, plus the location of the model (the tiny Qwen2 "hub"
model of ``rehearsal/tiny_model.py``) and of the data (the hub-layout mirrors of
``rehearsal/mirrors.py``) — runs ``snakemake`` on it with 2 cores, and checks what a user would
look at (:func:`check_run`). Anything the overlay would change beyond :data:`ALLOWED` is a
failure of the rehearsal (:func:`check_overlay`), not a convenience.

Nothing else differs from the paper configs: world ``hub`` through ``datasets``,
decontamination, ``fetch-base-model``, the templates and graders (``answer_line``,
``math_verify``) in worker processes, vLLM sampling (its CPU build, in ``.venv-vllm``),
training under ``accelerate launch`` with 2 processes, FSDP, bf16 autocast, gradient
checkpointing, vLLM rollouts with weight sync, AER / PPO / Clip-Cov / KL-Cov where the config
has them, the exploration analysis with MiniLM, the reported column groups, REPORT.md.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "paper"
OVERLAY = Path(__file__).with_name("overlay.yaml")

# Key paths the overlay may set: sizes (counts, lengths, samples, seeds, processes, threads)
# and where the model, the data and the results live. ``*`` matches one key.
ALLOWED = (
    "results_dir", "seeds",
    "suites.*.k", "suites.*.n_samples", "suites.*.path", "suites.*.expected_rows",
    "train_data.path", "train_data.expected_rows",
    "base_model.hub.local_path",
    "sampling.max_new_tokens", "sampling.max_model_len",
    "training.rollouts", "training.prompts_per_rollout", "training.minibatch_prompts",
    "training.micro_batch_size", "training.max_new_tokens", "training.snapshot_every",
    "methods.*.estimator.critic_warmup_rollouts",
    "resources.train.gpu", "threads.*",
    "grading.workers", "grading.bootstrap", "report.bootstrap",
    "analysis.problems", "analysis.samples_per_problem", "analysis.batch_size",
    "analysis.checkpoints.problems", "analysis.checkpoints.samples_per_problem",
)


def leaf_paths(tree, prefix=""):
    """``(dotted path, value)`` of every leaf of a nested mapping."""
    if isinstance(tree, dict) and tree:
        for key, value in tree.items():
            yield from leaf_paths(value, f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, tree


def check_overlay(overlay: dict) -> None:
    """Refuse an overlay key that is not a size or a location (:data:`ALLOWED`)."""
    for path, _ in leaf_paths(overlay):
        if not any(fnmatch.fnmatchcase(path, pattern) for pattern in ALLOWED):
            raise ValueError(f"rehearsal overlay key {path!r} changes more than sizes, model and data location")


def merge(base: dict, overlay: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def overlay_for(paper: dict, name: str, workdir: Path, mirrors: Path, model: Path) -> dict:
    """The overlay of one paper config: rehearsal/overlay.yaml, data and model locations,
    results under the workdir, PPO's critic warm-up scaled to the rehearsal's rollouts."""
    from rehearsal.mirrors import overlay as mirror_location

    overlay = yaml.safe_load(OVERLAY.read_text())
    overlay["results_dir"] = str(workdir / name)
    overlay["base_model"] = {"hub": {"local_path": str(model)}}
    for suite, entry in paper["suites"].items():
        overlay["suites"].setdefault(suite, {}).update(mirror_location(mirrors, entry["benchmark"]))
    overlay["train_data"] = mirror_location(mirrors, paper["train_data"]["benchmark"])
    for method, entry in (paper.get("methods") or {}).items():
        if "critic_warmup_rollouts" in ((entry or {}).get("estimator") or {}):
            overlay.setdefault("methods", {})[method] = {"estimator": {"critic_warmup_rollouts": 1}}
    overlay["suites"] = {k: v for k, v in overlay["suites"].items() if k in paper["suites"]}
    for location in ("results_dir",):
        overlay[location] = os.path.relpath(overlay[location], ROOT)
    for _, entry in overlay["suites"].items():
        entry["path"] = os.path.relpath(entry["path"], ROOT)
    overlay["train_data"]["path"] = os.path.relpath(overlay["train_data"]["path"], ROOT)
    overlay["base_model"]["hub"]["local_path"] = os.path.relpath(model, ROOT)
    check_overlay(overlay)
    return overlay


def environment() -> dict:
    """The machine's settings for vLLM's CPU build and an offline hub (not config)."""
    return {
        **os.environ, "OMP_NUM_THREADS": "1", "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
    }


def snakemake(config: Path, *args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "snakemake", "--snakefile", str(ROOT / "Snakefile"), "--directory", str(ROOT),
           "--configfile", str(config), "--cores", "2", *args]
    return subprocess.run(cmd, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=timeout)


# --------------------------------------------------------------------------- what a user looks at


def check_run(cfg: dict) -> list[str]:
    """Problems with a finished rehearsal of ``cfg`` (empty: it passed)."""
    from safetensors.torch import load_file

    problems = []
    results = ROOT / cfg["results_dir"]
    expected = ["REPORT.md", "tables/main.md", "tables/main.csv", "tables/main.tex", "tables/comparisons.md",
                "tables/crossing.md", "figures/training_dynamics.png", "figures/entropy_control.png",
                "tables/exploration_summary.md", "figures/exploration_entropy.png", "figures/exploration_embeddings.png",
                "figures/exploration_checkpoints.png", "data/decontamination.json"]
    expected += [f"figures/passk_{suite}.png" for suite in cfg["suites"]]
    problems += [f"missing {name}" for name in expected if not (results / name).is_file()]
    main_table = (results / "tables" / "main.md").read_text() if (results / "tables" / "main.md").is_file() else ""
    if cfg.get("report", {}).get("reported") and "reported" not in main_table.lower():
        problems.append("the main table has no reported column group")
    base = load_file(results / "models" / "base" / "model.safetensors")
    for method in cfg["methods"]:
        for seed in cfg["seeds"]:
            run = f"{method}/seed{seed}"
            weights = results / "models" / method / f"seed{seed}" / "model.safetensors"
            if not weights.is_file():
                problems.append(f"{run}: no trained model")
                continue
            trained = load_file(weights)
            moved = max(float((trained[k].float() - base[k].float()).abs().max()) for k in base)
            if moved == 0:
                problems.append(f"{run}: the trained model equals the base model")
            dtypes = {str(v.dtype) for v in trained.values()}
            if dtypes != {"torch.float32"}:
                problems.append(f"{run}: trained weights saved as {dtypes}, not fp32 master weights")
            timings = [json.loads(x) for x in (results / "train" / method / f"seed{seed}" / "checkpoints" / "timings.jsonl").read_text().splitlines()]
            if {(t["param_dtype"], t["compute_dtype"]) for t in timings} != {("float32", "bfloat16")}:
                problems.append(f"{run}: not fp32 parameters with bf16 compute: {timings[0]}")
            if {t["processes"] for t in timings} != {cfg["resources"]["train"]["gpu"]}:
                problems.append(f"{run}: trained with {timings[0]['processes']} processes")
            metrics = [json.loads(x) for x in (results / "train" / method / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()]
            for r in metrics:
                if abs(r["eos_per_response"] - r["finished"]) > 1e-9:
                    problems.append(f"{run}: update {r['update']}: {r['eos_per_response']} EOS per response, {r['finished']} finished")
                    break
            if not any(r["policy_updated"] for r in metrics):
                problems.append(f"{run}: the policy was never updated")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rehearsal.run", description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="*", default=None, help="paper config names (default: all of configs/paper)")
    parser.add_argument("--workdir", default=str(ROOT / "results" / "rehearsal"))
    parser.add_argument("--model", default=None, help="an already built tiny model directory (default: build one)")
    args = parser.parse_args(argv)
    workdir = Path(args.workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    names = args.configs or sorted(p.stem for p in PAPER.glob("*.yaml"))

    from rehearsal.mirrors import write_mirrors
    from rehearsal.tiny_model import build_tiny_model

    t0 = time.time()
    mirrors = workdir / "mirrors"
    write_mirrors(mirrors, seed=0)
    model = Path(args.model).resolve() if args.model else workdir / "model"
    if not (model / "model.safetensors").is_file():
        build_tiny_model(model, seed=0, report=False)
    print(f"fixtures: {time.time() - t0:.0f} s", flush=True)

    failures, times = {}, {}
    for name in names:
        paper = yaml.safe_load((PAPER / f"{name}.yaml").read_text())
        cfg = merge(paper, overlay_for(paper, name, workdir, mirrors, model))
        config = workdir / f"{name}.yaml"
        config.write_text(yaml.safe_dump(cfg, sort_keys=False))
        start = time.time()
        proc = snakemake(config)
        times[name] = time.time() - start
        if proc.returncode != 0:
            failures[name] = ["snakemake failed:\n" + (proc.stdout + proc.stderr)[-4000:]]
            print(f"{name}: FAILED after {times[name]:.0f} s", flush=True)
            continue
        problems = check_run(cfg)
        again = snakemake(config, "-n", "--quiet")
        if again.returncode != 0 or "Nothing to be done" not in again.stdout + again.stderr:
            problems.append("snakemake -n afterwards has jobs to run:\n" + (again.stdout + again.stderr)[-2000:])
        if problems:
            failures[name] = problems
        print(f"{name}: {'FAILED' if problems else 'ok'} in {times[name]:.0f} s", flush=True)
    summary = {"seconds": {k: round(v, 1) for k, v in times.items()}, "total_seconds": round(time.time() - t0, 1),
               "failures": failures}
    (workdir / "rehearsal.json").write_text(json.dumps(summary, indent=2) + "\n")
    for name, problems in failures.items():
        print(f"\n{name}:\n  " + "\n  ".join(problems), file=sys.stderr)
    print(f"rehearsal: {len(names) - len(failures)} of {len(names)} paper configs passed in {summary['total_seconds']:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
