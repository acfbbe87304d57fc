"""SFT and one training job on an idle machine and beside one competing single-threaded process.

    python benchmarks/loaded_machine.py [--sft-steps 150] [--rollouts 4] [--repeats 2]

What a new user meets when the machine is not idle: the default config's SFT
(``build-base-model``, ``threads.build_base_model`` threads, ``--sft-steps`` steps) and one
``grpo`` training job (one thread, ``--rollouts`` rollouts from that base model), each timed
idle and with a competing process (``python -c 'while True: pass'``: one busy core of two),
alternating idle / loaded / idle / loaded. Variants: the pipeline's setting
(``OMP_WAIT_POLICY=PASSIVE``, set by ``python -m pipeline``) and OpenMP's default spinning
(``OMP_WAIT_POLICY=ACTIVE``, what the pipeline did before). Reports each median and the
slowdown factor loaded / idle (target: <= 2.5x). Writes results/benchmarks/loaded_machine.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common  # noqa: E402

ROOT = _common.ROOT


def busy():
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def run(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sft-steps", type=int, default=150)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["PASSIVE", "ACTIVE"])
    args = parser.parse_args(argv)
    import yaml

    from pipeline.config import check_config, method_specs

    info = _common.machine_info()
    cfg = check_config(yaml.safe_load((ROOT / "config.yaml").read_text()))
    data = _common.require(ROOT / "results" / "data" / "train.parquet", "the training split (make reproduce first)")
    suites = sorted(str(p) for p in (ROOT / "results" / "data" / "suites").glob("*.parquet"))
    tmp = Path(tempfile.mkdtemp(prefix="loaded-"))
    base_cfg = {**cfg["base_model"], "sft": {**cfg["base_model"]["sft"], "steps": args.sft_steps}}
    threads = cfg["threads"]["build_base_model"]
    sft = [sys.executable, "-m", "pipeline", "build-base-model", "--config-json", json.dumps(base_cfg),
           "--world-json", json.dumps(cfg["toy"]), "--template", cfg["prompt"]["template"], "--exclude", *suites,
           "--out", str(tmp / "base"), "--metrics", str(tmp / "sft.json"), "--threads", str(threads)]
    spec = method_specs({**cfg, "training": {**cfg["training"], "rollouts": args.rollouts, "snapshot_every": 0}})["grpo"]

    def train(i):
        out = tmp / f"train{i}"
        return [sys.executable, "-m", "pipeline", "train", "--base-model", str(tmp / "base"), "--train-problems", str(data),
                "--method-json", json.dumps(spec), "--seed", "0", "--template", cfg["prompt"]["template"],
                "--out-model", str(out / "model"), "--metrics", str(out / "m.jsonl"), "--checkpoint-dir", str(out / "ckpt"),
                "--threads", str(cfg["threads"]["train"])]

    times: dict[tuple[str, str, str], list[float]] = {}
    runs = 0
    for _ in range(args.repeats):
        for policy in args.policies:
            env = {**os.environ, "OMP_WAIT_POLICY": policy}
            for load in ("idle", "loaded"):
                competitor = busy() if load == "loaded" else None
                try:
                    times.setdefault(("SFT", policy, load), []).append(run(sft, env))
                    times.setdefault(("train", policy, load), []).append(run(train(runs), env))
                    runs += 1
                finally:
                    if competitor is not None:
                        competitor.kill()
                        competitor.wait()
    rows = []
    for job in ("SFT", "train"):
        for policy in args.policies:
            idle = _common.median(times[(job, policy, "idle")])
            loaded = _common.median(times[(job, policy, "loaded")])
            rows.append({"job": f"{job} ({threads if job == 'SFT' else cfg['threads']['train']} thread(s))",
                         "OMP_WAIT_POLICY": policy, "idle s": round(idle, 1), "loaded s": round(loaded, 1),
                         "slowdown": round(loaded / idle, 2)})
    _common.print_table(rows, title=f"SFT {args.sft_steps} steps, grpo {args.rollouts} rollouts; one competing busy process")
    print(_common.machine_line(info))
    _common.write_result("loaded_machine", {"machine": info, "rows": rows,
                                            "times": {"|".join(k): v for k, v in times.items()}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
