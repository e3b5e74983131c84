"""MNIST with 100 labels: Triple-GAN's fast preset against the supervised baseline, by wall time.

    python -m bench.mnist100                       # fast preset (60 min on a 2-core CPU) + baseline
    python -m bench.mnist100 --runs pretrain_only  # the ablation: pre-training only for the same hour
    python -m bench.mnist100 --runs triple_gan_fast pretrain_only --parallel   # both at once, one core each

Each run is a real CLI run; its errors per epoch are read back from its TensorBoard events and written to
bench/results/mnist100.{json,csv,md} (wall time since start, epoch, test error of C and of EMA C).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from gan_lightning.tbread import read_scalars

RUNS = {
    "triple_gan_fast": ["experiment=triple_gan_mnist100_fast"],
    # the ablation: C's pre-training only (same augmentation, consistency and learning rate) for the same hour
    "pretrain_only": ["experiment=triple_gan_mnist100_fast", "model.pretrain_epochs=1000", "epochs=0"],
    "baseline": ["experiment=classifier_mnist100"],
}


def launch(name: str, overrides: list[str], out_root: Path, seed: int, cores: list[int] | None = None) -> tuple[subprocess.Popen, float]:
    """Start one CLI run; with ``cores`` it is pinned to them and uses as many threads."""
    cmd = [sys.executable, "-m", "gan_lightning", *overrides, f"seed={seed}", f"hydra.run.dir={out_root / name}"]
    env = dict(os.environ)
    if cores is not None:
        cmd = ["taskset", "-c", ",".join(map(str, cores)), *cmd]
        env["OMP_NUM_THREADS"] = str(len(cores))
    print("$", " ".join(cmd), flush=True)
    if cores is None:
        return subprocess.Popen(cmd, env=env), time.time()
    with (out_root / f"{name}.log").open("w") as log:  # side by side: one log per run (the child keeps its copy)
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=log), time.time()


def collect(name: str, overrides: list[str], out_root: Path, proc: subprocess.Popen, start: float) -> dict:
    """Wait for a run and read its error curve back from its TensorBoard events."""
    if proc.wait():
        raise SystemExit(f"error: run {name} failed with exit code {proc.returncode}")
    wall = time.time() - start
    run_dir = out_root / name
    scalars = read_scalars(run_dir / "tb")
    t0 = start
    err_c = {s: (w, v) for w, s, v in scalars.get("val/err_c", [])}
    err_ema = {s: v for _, s, v in scalars.get("val/err_ema", [])}
    epochs = {s: v for _, s, v in scalars.get("epoch", [])}
    curve = [{"run": name, "wall_s": round(w - t0, 1), "epoch": int(epochs.get(s, -1)), "step": s,
              "err_c": round(v, 5), "err_ema": round(err_ema.get(s, float("nan")), 5)} for s, (w, v) in sorted(err_c.items())]
    final = curve[-1] if curve else {}
    return {"run": name, "overrides": overrides, "wall_s": round(wall, 1), "curve": curve,
            "final_err_c": final.get("err_c"), "final_err_ema": final.get("err_ema"),
            "best_err_ema": min((c["err_ema"] for c in curve), default=None)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["triple_gan_fast", "baseline"], choices=sorted(RUNS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run (e.g. trainer.max_time=00:00:10:00)")
    parser.add_argument("--parallel", action="store_true",
                        help="start the runs together, each pinned to an equal share of the cores (same wall time, same hardware)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "runs" / ("mnist100_parallel" if args.parallel else "mnist100")
    root.mkdir(parents=True, exist_ok=True)
    cores = sorted(os.sched_getaffinity(0))
    if args.parallel and len(cores) < len(args.runs):
        raise SystemExit(f"error: --parallel needs a core per run ({len(args.runs)} runs, {len(cores)} cores)")
    share = len(cores) // len(args.runs)
    overrides = {name: RUNS[name] + args.extra for name in args.runs}
    if args.parallel:  # start all, then wait for each
        started = [launch(name, overrides[name], root, args.seed, cores[i * share:(i + 1) * share]) for i, name in enumerate(args.runs)]
        results = [collect(name, overrides[name], root, *s) for name, s in zip(args.runs, started)]
    else:  # one after the other, on every core
        results = [collect(name, overrides[name], root, *launch(name, overrides[name], root, args.seed)) for name in args.runs]
    meta = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": share if args.parallel else torch.get_num_threads(),
            "parallel": args.parallel, "torch": torch.__version__, "cuda": torch.cuda.is_available(), "seed": args.seed,
            "date": time.strftime("%Y-%m-%d %H:%M")}
    default = args.runs == ["triple_gan_fast", "baseline"] and not args.parallel
    stem = out / ("mnist100" if default else "mnist100_" + "_".join(args.runs) + ("_parallel" if args.parallel else ""))
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["run", "wall_s", "epoch", "step", "err_c", "err_ema"])
        writer.writeheader()
        for r in results:
            writer.writerows(r["curve"])
    lines = ["| run | wall time (min) | epochs | final test error C | final test error EMA C | best EMA C |", "|---|---|---|---|---|---|"]
    for r in results:
        last = r["curve"][-1] if r["curve"] else {}
        lines.append(f"| {r['run']} | {r['wall_s'] / 60:.1f} | {last.get('epoch', -1) + 1} | {100 * (r['final_err_c'] or float('nan')):.2f} % "
                     f"| {100 * (r['final_err_ema'] or float('nan')):.2f} % | {100 * (r['best_err_ema'] or float('nan')):.2f} % |")
    table = "\n".join(lines)
    stem.with_suffix(".md").write_text(f"# MNIST, 100 labels (seed {args.seed})\n\n{json.dumps(meta)}\n\n{table}\n")
    print(table)


if __name__ == "__main__":
    main()
