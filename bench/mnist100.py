"""MNIST with 100 labels: Triple-GAN's fast preset against the supervised baseline, by wall time.

    python -m bench.mnist100                       # fast preset (60 min on a 2-core CPU) + baseline
    python -m bench.mnist100 --runs pretrain_only  # the ablation: pre-training only for the same hour
    python -m bench.mnist100 --runs triple_gan_fast pretrain_only --parallel   # both at once, one core each
    python -m bench.mnist100 --runs triple_gan_fast --label-seeds 2 3 --parallel  # other labeled splits (the paper
                                                                                # reports the mean over splits)
    python -m bench.mnist100 --combine A.json B.json --out bench/results/NAME       # one table from several reports
    python -m bench.mnist100 --runs triple_gan_fast_cheap_rp --parallel --cores 0   # one run on core 0, core 1 free

Each run is a real CLI run; its errors per epoch are read back from its TensorBoard events and written to
bench/results/mnist100.{json,csv,md} (wall time since start, epoch, test error of C and of EMA C, validation error of
EMA C; "best EMA C" is the test error at the epoch of the lowest validation error, chosen on validation). With several
``--label-seeds`` (which 100 training images are labeled) every run is made once per split, and the table ends with
the mean and standard deviation over the splits.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from bench.plots import color, error_curves
from gan_lightning.tbread import read_run_scalars

RUNS = {
    "triple_gan_fast": ["experiment=triple_gan_mnist100_fast"],
    # the ablation: C's pre-training only (same augmentation, consistency and learning rate) for the same hour
    "pretrain_only": [
        "experiment=triple_gan_mnist100_fast",
        "model.schedule.pretrain_epochs=1000",
        "model.schedule.pretrain_time_share=null",
        "model.epochs=0",
    ],
    "baseline": ["experiment=classifier_mnist100"],
    # variants of the game that give C a larger share of the hour: one z draw and one C forward per iteration, D and G
    # on half the batch (cheap); and with R_P from 80 % instead of 90 % class-true samples, C's BN statistics from its
    # unlabeled batch only (cheap_rp)
    "triple_gan_fast_cheap": [
        "experiment=triple_gan_mnist100_fast",
        "model.fidelity.reuse_forwards=true",
        "model.batch_sizes.d_unlabeled=200",
        "model.generator_batch=100",
    ],
    # the preset before cutout: C's student and teacher views both get the affine map only, G's samples and metrics
    # come from G itself (docs/triple_gan.md: the two compared on validation over the five splits)
    "triple_gan_fast_affine": [
        "experiment=triple_gan_mnist100_fast",
        "~model.additions.augment",
        "+model.additions.augment={_target_:gan_lightning.nets.blocks.RandomAffine,degrees:10,translate:2,"
        "scale:[0.9,1.1]}",
        "model.additions.teacher_augment=null",
        "model.samples.g_ema_decay=null",
    ],
    "triple_gan_fast_cheap_rp": [
        "experiment=triple_gan_mnist100_fast",
        "model.fidelity.reuse_forwards=true",
        "model.batch_sizes.d_unlabeled=200",
        "model.generator_batch=100",
        "model.schedule.pseudo_label_trigger=0.8",
        "model.fidelity.c_bn_update=unlabeled",
    ],
}


def launch(
    name: str, overrides: list[str], out_root: Path, seed: int, cores: list[int] | None = None
) -> tuple[subprocess.Popen, float]:
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


def collect(
    name: str, overrides: list[str], out_root: Path, proc: subprocess.Popen, start: float, run: str, label_seed: int
) -> dict:
    """Wait for the run in ``out_root / name`` (run ``run`` on split ``label_seed``) and read its error curve back from
    its TensorBoard events."""
    if proc.wait():
        raise SystemExit(f"error: run {name} failed with exit code {proc.returncode}")
    wall = time.time() - start
    run_dir = out_root / name
    scalars = read_run_scalars(run_dir)  # the test errors (older runs logged them as val/*)
    t0 = start
    err_c = {s: (w, v) for w, s, v in scalars.get("test/err_c", [])}
    err_ema = {s: v for _, s, v in scalars.get("test/err_ema", [])}
    val_ema = {s: v for _, s, v in scalars.get("val/err_ema", [])}
    epochs = {s: v for _, s, v in scalars.get("epoch", [])}
    curve: list[dict[str, Any]] = [
        {
            "run": run,
            "label_seed": label_seed,
            "wall_s": round(w - t0, 1),
            "epoch": int(epochs.get(s, -1)),
            "step": s,
            "err_c": round(v, 5),
            "err_ema": round(err_ema.get(s, float("nan")), 5),
            "val_err_ema": round(val_ema[s], 5) if s in val_ema else None,
        }
        for s, (w, v) in sorted(err_c.items())
    ]
    final = curve[-1] if curve else {}
    gen = {key: sorted((s, v) for _, s, v in scalars.get(f"gen/{key}", [])) for key in GEN_METRICS}
    for point in curve:  # the generator's metrics logged at the same step as the error
        for key, values in gen.items():
            point[key] = next((round(v, 5) for s, v in values if s == point["step"]), None)
    return {
        "run": run,
        "label_seed": label_seed,
        "overrides": overrides,
        "wall_s": round(wall, 1),
        "curve": curve,
        "final_err_c": final.get("err_c"),
        "final_err_ema": final.get("err_ema"),
        "final_val_err_ema": final.get("val_err_ema"),  # what a choice between runs reads
        # the EMA C test error at the epoch of its lowest validation error (what a best checkpoint holds)
        "best_err_ema": min(
            ((c["val_err_ema"], c["err_ema"]) for c in curve if c["val_err_ema"] is not None), default=(None, None)
        )[1],
        **{f"final_{key}": (values[-1][1] if values else None) for key, values in gen.items()},
    }


# the generator's metrics read back: EMA C's accuracy on G's samples, the reference network's, FID (reference features)
GEN_METRICS = ("ema_c_acc", "cond_acc", "fid")


def cpu_flags() -> dict:
    """Model name and the flags that decide bf16's speed on this CPU (recorded with every benchmark)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next(
        (line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
        platform.processor(),
    )
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), []))
    return {
        "cpu": model,
        "avx512_bf16": "avx512_bf16" in flags,
        "amx_bf16": "amx_bf16" in flags,
        "avx512f": "avx512f" in flags,
    }


def final_val(result: dict) -> float | None:
    """The last epoch's EMA C validation error: the report's key, or its curve's (reports written before the key)."""
    if "final_val_err_ema" in result:
        return result["final_val_err_ema"]
    return result["curve"][-1].get("val_err_ema") if result["curve"] else None


def summary_table(results: list[dict]) -> str:
    """One row per run and split; with several splits of a run, a row with the mean and SD over them."""
    lines = [
        "| run | labeled split | wall time (min) | epochs | final val. error EMA C (chosen on) | final test error C "
        "| final test error EMA C | EMA C at its best val. epoch | G: EMA C acc. | G: cond. acc. | G: FID |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    pct = lambda v: "–" if v is None else f"{100 * v:.2f} %"
    num = lambda v: "–" if v is None else f"{v:.2f}"
    for r in results:
        last = r["curve"][-1] if r["curve"] else {}
        lines.append(
            f"| {r['run']} | {r['label_seed']} | {r['wall_s'] / 60:.1f} | {last.get('epoch', -1) + 1} "
            f"| {pct(final_val(r))} | {pct(r['final_err_c'])} "
            f"| {pct(r['final_err_ema'])} | {pct(r['best_err_ema'])} | {pct(r.get('final_ema_c_acc'))} "
            f"| {pct(r.get('final_cond_acc'))} | {num(r.get('final_fid'))} |"
        )
    keys = (
        "final_val_err_ema",
        "final_err_c",
        "final_err_ema",
        "best_err_ema",
        "final_ema_c_acc",
        "final_cond_acc",
        "final_fid",
    )
    for run in dict.fromkeys(r["run"] for r in results):
        group = [r for r in results if r["run"] == run and r["final_err_ema"] is not None]
        if len(group) > 1:
            cells = []
            for k in keys:
                get = final_val if k == "final_val_err_ema" else lambda r, k=k: r.get(k)
                col = [float(v) for v in map(get, group) if v is not None]
                if len(col) < len(group):
                    cells.append("–")
                else:
                    scale, unit = (1, "") if k == "final_fid" else (100, " %")
                    cells.append(f"{scale * statistics.mean(col):.2f} ± {scale * statistics.stdev(col):.2f}{unit}")
            lines.append(f"| {run}, mean ± SD | {len(group)} splits | | | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    """EMA C error (validation and test) against wall time: one colour per run, one line style per labeled split."""
    runs = list(dict.fromkeys(r["run"] for r in results))
    keys = (("val_err_ema", "validation"), ("err_ema", "test"))
    error_curves(
        results, path, "MNIST, 100 labels", keys, lambda p: p["wall_s"] / 60, lambda r: color(runs.index(r["run"]))
    )


def combine(reports: list[Path], stem: Path) -> None:
    """Merge the results of several benchmark reports (e.g. one per batch of labeled splits) into one table."""
    for report in reports:
        if not report.is_file():
            raise SystemExit(f"error: --combine: {report} does not exist")
    loaded = [json.loads(r.read_text()) for r in reports]
    results: list[dict] = []
    seen: dict[tuple, Path] = {}
    for report, data in zip(reports, loaded):
        for r in data["results"]:
            r.setdefault("label_seed", 1)  # reports from before --label-seeds ran on the default split
            results.append(r)
            key = (r["run"], r["label_seed"])
            if key in seen:
                raise SystemExit(
                    f"error: --combine: run {key[0]} on split {key[1]} is in both {seen[key]} and {report}; "
                    "each run and split may appear once"
                )
            seen[key] = report
    table = summary_table(results)
    stem.parent.mkdir(parents=True, exist_ok=True)
    plot(results, stem.with_suffix(".png"))
    stem.with_suffix(".json").write_text(
        json.dumps(
            {"sources": [str(r) for r in reports], "meta": [x["meta"] for x in loaded], "results": results}, indent=1
        )
    )
    stem.with_suffix(".md").write_text("# MNIST, 100 labels: " + ", ".join(r.name for r in reports) + f"\n\n{table}\n")
    print(table)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", nargs="+", default=["triple_gan_fast", "baseline"], choices=sorted(RUNS))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--label-seeds",
        nargs="+",
        type=int,
        default=[1],
        help="labeled splits (data.label_seed) to run each run on; 1 is the config's default",
    )
    parser.add_argument("--out", default="bench/results")
    parser.add_argument(
        "--extra", nargs="*", default=[], help="overrides added to every run (e.g. trainer.max_time=00:00:10:00)"
    )
    parser.add_argument(
        "--parallel",
        action="store_true",
        help="start the runs together, each pinned to an equal share of the cores (same wall time, same hardware)",
    )
    parser.add_argument(
        "--cores",
        nargs="+",
        type=int,
        help="with --parallel: the cores to share among the runs (default: all "
        "this process may use), e.g. --cores 0 to leave core 1 free",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        metavar="JSON",
        help="run nothing: write one table (with mean and SD per run) from these reports to --out{.json,.md}",
    )
    args = parser.parse_args(argv)
    if args.combine:
        combine([Path(f) for f in args.combine], Path(args.out))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    root = out / "runs" / ("mnist100_parallel" if args.parallel else "mnist100")
    root.mkdir(parents=True, exist_ok=True)
    default_split = args.label_seeds == [1]
    # (directory name, run, split, overrides); the default split keeps the plain run name and command
    jobs = [
        (
            name if default_split else f"{name}_labels{ls}",
            name,
            ls,
            RUNS[name] + ([] if default_split else [f"data.label_seed={ls}"]) + args.extra,
        )
        for name in args.runs
        for ls in args.label_seeds
    ]
    cores = sorted(args.cores or os.sched_getaffinity(0))
    if args.parallel and len(cores) < len(jobs):
        raise SystemExit(f"error: --parallel needs a core per run ({len(jobs)} runs, {len(cores)} cores)")
    share = len(cores) // len(jobs)
    if args.parallel:  # start all, then wait for each
        started = [
            launch(d, o, root, args.seed, cores[i * share : (i + 1) * share]) for i, (d, _, _, o) in enumerate(jobs)
        ]
        results = [collect(d, o, root, *s, run=name, label_seed=ls) for (d, name, ls, o), s in zip(jobs, started)]
    else:  # one after the other, on every core
        results = [
            collect(d, o, root, *launch(d, o, root, args.seed), run=name, label_seed=ls) for d, name, ls, o in jobs
        ]
    meta = {
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": share if args.parallel else torch.get_num_threads(),
        "parallel": args.parallel,
        "torch": torch.__version__,
        "cuda": torch.cuda.is_available(),
        "seed": args.seed,
        "label_seeds": args.label_seeds,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        **cpu_flags(),
    }
    default = args.runs == ["triple_gan_fast", "baseline"] and not args.parallel and default_split
    stem = out / (
        "mnist100"
        if default
        else "mnist100_"
        + "_".join(args.runs)
        + ("_parallel" if args.parallel else "")
        + ("" if default_split else "_labels" + "_".join(map(str, args.label_seeds)))
    )
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    with stem.with_suffix(".csv").open("w", newline="") as f:
        writer = csv.DictWriter(
            f,
            fieldnames=[
                "run",
                "label_seed",
                "wall_s",
                "epoch",
                "step",
                "err_c",
                "err_ema",
                "val_err_ema",
                *GEN_METRICS,
            ],
        )
        writer.writeheader()
        for r in results:
            writer.writerows(r["curve"])
    plot(results, stem.with_suffix(".png"))
    table = summary_table(results)
    stem.with_suffix(".md").write_text(
        f"# MNIST, 100 labels (seed {args.seed}, labeled splits {args.label_seeds})\n\n{json.dumps(meta)}\n\n{table}\n"
    )
    print(table)


if __name__ == "__main__":
    main()
