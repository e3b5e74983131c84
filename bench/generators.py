"""Generators on MNIST after the same short budget, measured offline: FID, KID, IS, conditional accuracy.

    python -m gan_lightning task=reference data=mnist     # once: the reference feature network
    python -m bench.generators                            # trains each model, then one task=evaluate table

Budget: 469 batches with one D and one G update each (one MNIST epoch at batch 128); Triple-GAN's classifier is
pre-trained first (``--triple-pretrain`` epochs, C only), as its game needs. Writes bench/results/generators.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

STEPS = 469
RUNS = {
    name: [
        f"model={name}",
        "model.epochs=1",
        f"trainer.limit_train_batches={STEPS}",
    ]  # 1:1 games: one G update per batch
    for name in ("gan", "dcgan", "cgan", "cdcgan", "triple_gan")
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument(
        "--triple-pretrain", type=int, default=5, help="C's pre-training epochs before Triple-GAN's game"
    )
    parser.add_argument("--n-samples", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--skip-training", action="store_true", help="evaluate the checkpoints of an earlier run of this bench"
    )
    args = parser.parse_args()
    out = Path(args.out)
    runs_dir = out / "runs" / "generators"
    walls, ckpts = {}, {}
    for name in args.models:
        extra = [f"model.schedule.pretrain_epochs={args.triple_pretrain}"] if name == "triple_gan" else []
        cmd = [
            sys.executable,
            "-m",
            "gan_lightning",
            *RUNS[name],
            *extra,
            "data=mnist",
            "trainer=cpu",
            f"seed={args.seed}",
            f"hydra.run.dir={runs_dir / name}",
        ]
        ckpt = runs_dir / name / "checkpoints" / "last.ckpt"
        if not args.skip_training:
            print("$", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True)
        # from the run's config (written at start) to its last checkpoint
        walls[name] = round(ckpt.stat().st_mtime - (runs_dir / name / ".hydra" / "config.yaml").stat().st_mtime, 1)
        ckpts[name] = str(ckpt)
    spec = "{" + ", ".join(f"{k}: {v}" for k, v in ckpts.items()) + "}"
    cmd = [
        sys.executable,
        "-m",
        "gan_lightning",
        "task=evaluate",
        f"task.checkpoints={spec}",
        f"task.n_samples={args.n_samples}",
        f"hydra.run.dir={runs_dir / 'evaluate'}",
    ]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    result = json.loads((runs_dir / "evaluate" / "evaluation.json").read_text())
    meta = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "seed": args.seed,
        "generator_updates": STEPS,
        "triple_gan_pretrain_epochs": args.triple_pretrain,
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }
    (out / "generators.json").write_text(json.dumps({"meta": meta, "train_wall_s": walls, **result}, indent=1))
    table = (runs_dir / "evaluate" / "evaluation.md").read_text()
    walls_md = "\n".join(f"- {k}: {v / 60:.1f} min of training (with start-up)" for k, v in walls.items())
    (out / "generators.md").write_text(
        f"# Generators on MNIST, {STEPS} generator updates each\n\n{json.dumps(meta)}\n\n{table}\n{walls_md}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
