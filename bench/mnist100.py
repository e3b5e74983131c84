"""MNIST with 100 labels: Triple-GAN's fast preset against the supervised baseline, by wall time.

    python -m bench.mnist100                       # fast preset (60 min on a 2-core CPU) + baseline
    python -m bench.mnist100 --runs pretrain_only  # the ablation: pre-training only for the same hour

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
    # the ablation: C's pre-training only, for the fast preset's hour (one bf16 pre-training epoch, evaluation
    # included, takes 35 s on the 2-core CPU: 103 epochs = 60 min; a fixed count keeps the comparison fair
    # when the machine is shared)
    "pretrain_only": ["experiment=triple_gan_mnist100_fast", "model.pretrain_epochs=103", "epochs=0", "trainer.max_time=null"],
    "baseline": ["experiment=classifier_mnist100"],
}


def run(name: str, overrides: list[str], out_root: Path, seed: int) -> dict:
    run_dir = out_root / name
    cmd = [sys.executable, "-m", "gan_lightning", *overrides, f"seed={seed}", f"hydra.run.dir={run_dir}"]
    print("$", " ".join(cmd), flush=True)
    start = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - start
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
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run(name, RUNS[name] + args.extra, out / "runs" / "mnist100", args.seed) for name in args.runs]
    meta = {"machine": platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "cuda": torch.cuda.is_available(), "seed": args.seed, "date": time.strftime("%Y-%m-%d %H:%M")}
    stem = out / ("mnist100" if args.runs == ["triple_gan_fast", "baseline"] else "mnist100_" + "_".join(args.runs))
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
