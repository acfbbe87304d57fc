"""The toy AER controller settings, chosen by a sweep over seeds (README "AER").

    python scripts/aer_sweep.py --base-model results/models/base --train results/data/train.parquet \
        [--seeds 0 1 2] [--variants eta:alpha_max ...] [--references grpo ...] [--rollouts N] [--jobs 2]

Trains ``grpo_aer`` with each (eta, alpha_max) variant (rho and everything else from
config.yaml) and ``grpo`` for reference, for each seed, with the default config's training
settings; prints, per variant and seed, how far the rollout entropy stays from the target H*
over the second half of training (mean |H - H*| / H*, the claim's tolerance is 20%) and the
rollout accuracy at the end against GRPO's. Writes results/aer_sweep/summary.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    from pipeline.config import check_config, method_specs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-model", required=True)
    parser.add_argument("--train", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--variants", nargs="*", default=["2:0.5", "1:0.2", "0.5:0.1", "0.25:0.05"])
    parser.add_argument("--references", nargs="*", default=["grpo"], help="presets trained as they are, for reference")
    parser.add_argument("--rollouts", type=int, default=None, help="training.rollouts (default: config.yaml's)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "results" / "aer_sweep"))
    args = parser.parse_args()
    cfg = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    rho = cfg["methods"]["grpo_aer"]["regularizer"].get("rho", 0.6)
    runs = {name: (name, {}) for name in args.references}
    for v in args.variants:
        eta, amax = map(float, v.split(":"))
        runs[f"aer_eta{eta:g}_max{amax:g}"] = ("grpo_aer", {"regularizer": {"rho": rho, "eta": eta, "alpha_max": amax}})
    out = Path(args.out)

    def train(name, seed):
        preset, entry = runs[name]
        spec = method_specs({**cfg, "methods": {name: {"preset": preset, **entry}}})[name]
        spec["training"]["snapshot_every"] = 0
        if args.rollouts:
            spec["training"]["rollouts"] = args.rollouts
        d = out / name / f"seed{seed}"
        if (d / "metrics.jsonl").is_file():
            return
        cmd = [sys.executable, "-m", "pipeline", "train", "--base-model", args.base_model, "--train-problems", args.train,
               "--method-json", json.dumps(spec), "--seed", str(seed), "--template", cfg["prompt"]["template"],
               "--out-model", str(d / "model"), "--metrics", str(d / "metrics.jsonl"), "--checkpoint-dir", str(d / "ckpt")]
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(lambda job: train(*job), [(n, s) for s in args.seeds for n in runs]))
    summary = {}
    for name in runs:
        for seed in args.seeds:
            recs = [json.loads(x) for x in (out / name / f"seed{seed}" / "metrics.jsonl").read_text().splitlines()]
            per_rollout = {r["rollout"]: r for r in recs}
            last = max(per_rollout)
            target = per_rollout[last].get("aer_target") or (0.8 * per_rollout[0]["rollout_entropy"])
            half = [per_rollout[r] for r in per_rollout if r >= last / 2]
            dev = sum(abs(r["rollout_entropy"] - target) for r in half) / len(half) / target
            summary.setdefault(name, {})[seed] = {
                "deviation": round(dev, 3), "max_deviation": round(max(abs(r["rollout_entropy"] - target) / target for r in half), 3),
                "final_accuracy": round(per_rollout[last]["accuracy"], 3), "initial_accuracy": round(per_rollout[0]["accuracy"], 3),
                "alpha_max_seen": max((r.get("aer_alpha") or 0) for r in recs),
                "entropy": [round(per_rollout[r]["rollout_entropy"], 4) for r in sorted(per_rollout)],
            }
            print(name, seed, summary[name][seed], flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
