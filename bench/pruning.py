"""What Optuna pruning saves: the same small Triple-GAN search with the median pruner and without, side by side.

    python -m bench.pruning                    # 8 trials each, one core each: bench/results/pruning.{json,md}

Both sweeps run ``sweep=optuna_triple_gan`` (the same sampler seed, so the same first trials) on a short Triple-GAN
(a few batches an epoch, so a trial takes seconds), one with ``callbacks.optuna_pruning.pruner=median`` and one with
``none``, each pinned to one core, started together. Recorded: each sweep's wall time, its trials' states, epochs
trained and the best validation value found.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from bench.mnist100 import cpu_flags

SEARCH = [
    "model=triple_gan",
    "model.schedule.pretrain_epochs=1",
    "trainer=cpu",
    "trainer.limit_val_batches=2",
    "logger=none",
    "callbacks.sample_grid=null",
    "callbacks.generator_metrics=null",
    "callbacks.progress_bar=null",
    "callbacks.optuna_pruning.warmup_epochs=2",
    "sweep=optuna_triple_gan",
]


def run(pruner: str, trials: int, root: Path, core: int | None, batches: int, epochs: int) -> subprocess.Popen:
    sweep = root / pruner
    cmd = [
        sys.executable,
        "-m",
        "gan_lightning",
        "-m",
        *SEARCH,
        f"trainer.limit_train_batches={batches}",
        f"model.epochs={epochs}",
        f"hydra.sweeper.n_trials={trials}",
        f"callbacks.optuna_pruning.pruner={pruner}",
        f"hydra.sweep.dir={sweep}",
    ]
    env = dict(os.environ)
    if core is not None:
        cmd, env["OMP_NUM_THREADS"] = ["taskset", "-c", str(core), *cmd], "1"
    print("$", shlex.join(cmd), flush=True)
    sweep.parent.mkdir(parents=True, exist_ok=True)
    with (root / f"{pruner}.log").open("w") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def summarize(sweep: Path, wall: float) -> dict:
    import optuna

    study = optuna.load_study(study_name="triple_gan", storage=f"sqlite:///{sweep / 'optuna.db'}")
    trials = [
        {
            "number": t.number,
            "state": t.state.name,
            "value": t.value,
            "epochs": len(t.intermediate_values),
            "params": t.params,
        }
        for t in study.trials
    ]
    values = [float(t.value) for t in study.trials if t.value is not None and t.state.name == "COMPLETE"]
    return {
        "wall_s": round(wall, 1),
        "trials": trials,
        "pruned": sum(t["state"] == "PRUNED" for t in trials),
        "epochs": sum(len(t.intermediate_values) for t in study.trials),
        "best_value": min(values, default=None),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--batches", type=int, default=30, help="batches an epoch (trainer.limit_train_batches)")
    parser.add_argument("--epochs", type=int, default=5, help="game epochs after one of pre-training")
    parser.add_argument("--out", type=Path, default=Path("bench/results/pruning"))
    parser.add_argument("--runs-dir", type=Path, default=Path("bench/results/runs/pruning"))
    args = parser.parse_args(argv)
    cores = sorted(os.sched_getaffinity(0))
    start = time.time()
    procs = {
        p: run(p, args.trials, args.runs_dir, cores[i] if len(cores) >= 2 else None, args.batches, args.epochs)
        for i, p in enumerate(("median", "none"))
    }
    walls = {}
    for pruner, proc in procs.items():
        if proc.wait():
            raise SystemExit(f"error: the {pruner} sweep failed; its log: {args.runs_dir / pruner}.log")
        walls[pruner] = time.time() - start
    results = {p: summarize(args.runs_dir / p, walls[p]) for p in procs}
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "trials": args.trials,
        "batches": args.batches,
        "epochs": args.epochs,
        "search": SEARCH,
        **cpu_flags(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = [
        f"# Optuna pruning on a small Triple-GAN search (`python -m bench.pruning`, {args.trials} trials, "
        "one core each)",
        "",
        json.dumps(meta),
        "",
        "| pruner | wall time | trials pruned | epochs reported to the study "
        "| best val/best_err_ema (finished trials) |",
        "|---|---|---|---|---|",
    ]
    for p, r in results.items():
        best = "–" if r["best_value"] is None else f"{100 * r['best_value']:.2f} %"
        lines.append(
            f"| {p} | {r['wall_s'] / 60:.1f} min | {r['pruned']} of {len(r['trials'])} | {r['epochs']} | {best} |"
        )
    saved = 1 - results["median"]["wall_s"] / results["none"]["wall_s"]
    lines += ["", f"Time saved by the median pruner: {100 * saved:.0f} %."]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
