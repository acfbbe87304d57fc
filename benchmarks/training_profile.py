"""Where a default training job's time goes, with the rollout policy's log-probs recomputed or reused.

    python benchmarks/training_profile.py [--methods grpo ppo] [--rollouts 8] [--repeats 2]

One training job per (method, ``training.old_log_probs`` variant) from the default run's base
model and training split, one thread, alternating recompute / rollout / recompute / rollout.
Each step's split comes from the trainer's own ``timings.jsonl``: sampling, the updates, and
the rest of the step (grading, the no-grad passes over the rollout — the policy's old
log-probs unless reused, PPO's critic values — and the advantages). Reports medians per step
and the job's wall time (start-up and model load included). Writes
``results/benchmarks/training_profile.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT
VARIANTS = ("recompute", "rollout")


def step_split(timings: Path) -> dict[str, float]:
    """Median seconds per step of sampling, updates and the rest, from a run's timings.jsonl."""
    rows = [json.loads(line) for line in timings.read_text().splitlines() if line.strip()]
    step = [r["step_seconds"] for r in rows]
    sample = [r["sample_seconds"] for r in rows]
    update = [sum(r["update_seconds"]) for r in rows]
    rest = [s - a - u for s, a, u in zip(step, sample, update)]
    return {"step s": _common.median(step), "sampling s": _common.median(sample),
            "updates s": _common.median(update), "grading + passes + advantages s": _common.median(rest)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", nargs="+", default=["grpo", "ppo"])
    parser.add_argument("--rollouts", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import yaml

    from pipeline.config import check_config, method_specs

    info = _common.machine_info()
    cfg = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    base = _common.require(ROOT / "results" / "models" / "base", "the default run's base model (make reproduce first)")
    data = _common.require(ROOT / "results" / "data" / "train.parquet", "the training split (make reproduce first)")
    tmp = Path(tempfile.mkdtemp(prefix="train-profile-"))

    results: dict[tuple[str, str], list[dict]] = {}
    for repeat in range(args.repeats):
        for method in args.methods:
            for variant in VARIANTS:
                training = {**cfg["training"], "rollouts": args.rollouts, "snapshot_every": 0, "old_log_probs": variant}
                spec = method_specs({**cfg, "training": training})[method]
                out = tmp / f"{method}-{variant}-{repeat}"
                cmd = [sys.executable, "-m", "pipeline", "train", "--base-model", str(base), "--train-problems", str(data),
                       "--method-json", json.dumps(spec), "--seed", "0", "--template", cfg["prompt"]["template"],
                       "--out-model", str(out / "model"), "--metrics", str(out / "m.jsonl"),
                       "--checkpoint-dir", str(out / "ckpt"), "--threads", str(cfg["threads"]["train"])]
                start = time.perf_counter()
                proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
                wall = time.perf_counter() - start
                if proc.returncode != 0:
                    raise SystemExit(f"train {method} ({variant}) failed:\n{proc.stderr[-3000:]}")
                results.setdefault((method, variant), []).append({"job s": wall, **step_split(out / "ckpt" / "timings.jsonl")})
    rows = []
    for (method, variant), runs in results.items():
        row = {"method": method, "old_log_probs": variant}
        for key in runs[0]:
            row[key] = round(_common.median(r[key] for r in runs), 3)
        rows.append(row)
    for method in args.methods:
        a, b = (next(r for r in rows if r["method"] == method and r["old_log_probs"] == v) for v in VARIANTS)
        b["step vs recompute"] = round(b["step s"] / a["step s"], 3)
    _common.print_table(rows, title=f"training jobs of {args.rollouts} rollouts, medians of {args.repeats} alternating runs")
    print(_common.machine_line(info))
    _common.write_result("training_profile", {"machine": info, "rollouts": args.rollouts, "rows": rows,
                                              "runs": {"|".join(k): v for k, v in results.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
