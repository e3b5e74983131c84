"""The source reports' experiments, each setting run for a stated wall time on one core, two seeds, side by side two
at a time, and tabulated (mean ± SD over the seeds of the last evaluation) for docs/experiments.md.

    python -m bench.experiments --list                          # the studies and their settings
    python -m bench.experiments --studies dcgan_lr gan_loss     # 5 minutes per run (--minutes), seeds 1 2 (--seeds)
    python -m bench.experiments --studies baselines --dry-run   # print the commands only
    python -m bench.experiments --retable dcgan_lr              # rebuild a study's table and images from its saved runs

Each run is a real CLI run (`python -m gan_lightning ...`) pinned to one core; its TensorBoard events are read back.
Writes bench/results/experiments_<study>.{json,md} and the last sample grid of each setting's first seed to
docs/experiments/<study>_<setting>.png. Timed studies run until `trainer.max_time` (`model.epochs` is raised so that
time decides); the supervised baselines keep their own epochs.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import write_png
from torchvision.transforms.functional import pil_to_tensor
from torchvision.utils import make_grid

from bench.mnist100 import cpu_flags
from bench.plots import Line, Panel, color, save, style
from gan_lightning.tbread import read_run_scalars

ROOT = Path(__file__).resolve().parent.parent
# study -> (timed, [(setting, overrides)])
STUDIES: dict[str, tuple[bool, list[tuple[str, list[str]]]]] = {
    "gan_loss": (True, [(loss, ["model=gan", f"model.loss={loss}"]) for loss in ("non_saturating", "minimax")]),
    "maxout": (
        True,
        [("MNIST", ["experiment=maxout_gan_mnist"]), ("Fashion-MNIST", ["experiment=maxout_gan_fashion_mnist"])],
    ),
    "dcgan_beta1": (
        True,
        [(f"beta1={b}", ["model=dcgan", f"model.optimizers.g.betas=[{b},0.999]"]) for b in ("0.5", "0.9")],
    ),
    "dcgan_d_steps": (
        True,
        [
            (f"D:G={d}:{g}", ["model=dcgan", f"model.d_steps={d}", f"model.g_steps={g}"])
            for d, g in ((5, 1), (1, 1), (1, 5))
        ],
    ),
    "dcgan_lr": (
        True,
        [(f"lr={lr}", ["model=dcgan", f"model.optimizers.g.lr={lr}"]) for lr in ("1e-1", "2e-4", "1e-10")],
    ),
    "dcgan_latent": (True, [(f"nz={nz}", ["model=dcgan", f"model.latent_dim={nz}"]) for nz in (10, 100, 1000)]),
    "cgan_vs_cdcgan": (True, [("cGAN", ["model=cgan"]), ("cDCGAN", ["model=cdcgan"])]),
    "report_vs_faithful": (
        True,
        [
            ("report", ["experiment=triple_gan_report", "trainer=cpu", "model.schedule.pretrain_time_share=0.4"]),
            ("faithful", ["model=triple_gan", "trainer=cpu", "model.schedule.pretrain_time_share=0.4"]),
        ],
    ),
    "baselines": (
        False,
        [("CNN", ["experiment=classifier_mnist100"]), ("MLP", ["experiment=classifier_mlp_mnist100"])],
    ),
}
# the reported errors are the test set's (runs written before the validation set existed are read with their test
# errors under test/, gan_lightning.tbread.read_run_scalars)
METRICS = (
    "gen/fid",
    "gen/kid_mean",
    "gen/is_mean",
    "gen/cond_acc",
    "gen/fid_class_mean",
    "test/err_ema",
    "test/err_c",
    "val/err_ema",
)
OVER_TRAINING = {"cgan_vs_cdcgan"}  # studies whose grids are also shown over training (a few epochs side by side)


def commands(study: str, minutes: float, seeds: list[int], out: Path) -> list[tuple[str, int, Path, list[str]]]:
    """(setting, seed, run directory, command) of every run of ``study``."""
    timed, settings = STUDIES[study]
    extra = (
        [
            f"trainer.max_time=00:00:{int(minutes):02d}:{int(60 * (minutes % 1)):02d}",
            "model.epochs=100000",
            "callbacks.generator_metrics.every_n_epochs=1000000",
        ]
        if timed
        else []
    )  # metrics once, after the last epoch
    runs = []
    for setting, overrides in settings:
        for seed in seeds:
            run_dir = out / "runs" / "experiments" / study / f"{setting.replace('=', '_').replace(':', '-')}_s{seed}"
            cmd = [
                sys.executable,
                "-m",
                "gan_lightning",
                *overrides,
                *extra,
                f"seed={seed}",
                f"hydra.run.dir={run_dir}",
            ]
            runs.append((setting, seed, run_dir, cmd))
    return runs


def final_values(run_dir: Path) -> dict[str, float]:
    """The last logged value of each metric, and the optimizer steps (every player's updates) done in its budget."""
    scalars = read_run_scalars(run_dir)
    final = {key: sorted(scalars[key], key=lambda e: e[1])[-1][2] for key in METRICS if scalars.get(key)}
    final["optimizer_steps"] = max((s for events in scalars.values() for _, s, _ in events), default=0)
    return final


def run_all(runs: list[tuple[str, int, Path, list[str]]], cores: list[int]) -> list[float]:
    """Run the commands ``len(cores)`` at a time, each pinned to one core; returns each run's wall time."""
    walls: list[float] = [0.0] * len(runs)
    pending = list(enumerate(runs))
    active: dict[int, tuple[int, subprocess.Popen, float]] = {}
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    while pending or active:
        for core in cores:
            if core not in active and pending:
                i, (_, _, run_dir, cmd) = pending.pop(0)
                run_dir.parent.mkdir(parents=True, exist_ok=True)
                log = (run_dir.parent / f"{run_dir.name}.log").open("w")
                print("$", " ".join(cmd[1:]), flush=True)
                active[core] = (
                    i,
                    subprocess.Popen(["taskset", "-c", str(core), *cmd], cwd=ROOT, env=env, stdout=log, stderr=log),
                    time.time(),
                )
        time.sleep(1)
        for core, (i, proc, start) in list(active.items()):
            if proc.poll() is not None:
                if proc.returncode:
                    raise SystemExit(
                        f"error: {' '.join(runs[i][3][1:])} failed with exit code {proc.returncode} "
                        f"(log: {runs[i][2]}.log)"
                    )
                walls[i] = time.time() - start
                del active[core]
    return walls


def table(study: str, results: list[dict]) -> str:
    present = [k for k in METRICS if any(k in r["final"] for r in results)]
    lines = [f"| {study} | optimizer steps | " + " | ".join(present) + " |", "|---" * (len(present) + 2) + "|"]
    for setting in dict.fromkeys(r["setting"] for r in results):
        group = [r["final"] for r in results if r["setting"] == setting]
        cells = [f"{statistics.mean(g.get('optimizer_steps', 0) for g in group):,.0f}"]
        for key in present:
            values = [g[key] for g in group if key in g]
            scale, unit = (100, " %") if key.startswith(("val/", "test/")) or key == "gen/cond_acc" else (1, "")
            if not values:
                cells.append("–")
            elif len(values) == 1:
                cells.append(f"{scale * values[0]:.2f}{unit}")
            else:
                cells.append(f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}{unit}")
        lines.append(f"| {setting} ({len(group)} seeds) | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", nargs="+", choices=sorted(STUDIES), default=[])
    parser.add_argument("--minutes", type=float, default=5.0, help="wall time of each timed run")
    parser.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    parser.add_argument("--cores", nargs="+", type=int, help="cores to run on, one run per core (default: all)")
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--images", default="docs/experiments")
    parser.add_argument("--list", action="store_true")
    parser.add_argument("--dry-run", action="store_true")
    parser.add_argument(
        "--retable",
        nargs="+",
        choices=sorted(STUDIES),
        default=[],
        help="rebuild these studies' tables and images from their saved runs (nothing is run)",
    )
    parser.add_argument("extra", nargs="*", help="overrides added to every run (e.g. trainer.limit_val_batches=10)")
    args = parser.parse_args()
    if args.list or not (args.studies or args.retable):
        for name, (timed, settings) in STUDIES.items():
            print(
                f"{name} ({'timed' if timed else 'own epochs'}): "
                + "; ".join(f"{s}: {' '.join(o)}" for s, o in settings)
            )
        return
    out, cores = Path(args.out), sorted(args.cores or os.sched_getaffinity(0))
    for study in args.studies:
        runs = [
            (s, seed, d, [*cmd[:-2], *args.extra, *cmd[-2:]])
            for s, seed, d, cmd in commands(study, args.minutes, args.seeds, out)
        ]
        if args.dry_run:
            print("\n".join(" ".join(cmd[1:]) for *_, cmd in runs))
            continue
        walls = run_all(runs, cores)
        results = [
            {"setting": s, "seed": seed, "run_dir": str(d), "wall_s": round(w, 1)}
            for (s, seed, d, _), w in zip(runs, walls)
        ]
        meta = {
            "minutes": args.minutes if STUDIES[study][0] else None,
            "seeds": args.seeds,
            "cores": cores,
            "extra": args.extra,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            **cpu_flags(),
        }
        report(study, meta, results, out, Path(args.images))
    for study in args.retable:
        saved = json.loads((out / f"experiments_{study}.json").read_text())
        report(study, saved["meta"], saved["results"], out, Path(args.images))


def report(study: str, meta: dict, results: list[dict], out: Path, images: Path) -> None:
    """Read each run's final values back from its TensorBoard events, write the study's table (JSON + Markdown) and
    the last sample grid of each setting's first seed (with grids over training for the studies that show them)."""
    for r in results:
        r["final"] = final_values(ROOT / r["run_dir"])
    images.mkdir(parents=True, exist_ok=True)
    for setting in dict.fromkeys(r["setting"] for r in results):
        first = ROOT / next(r["run_dir"] for r in results if r["setting"] == setting)
        grids = sorted((first / "samples").glob("*.png"))
        name = f"{study}_{setting.replace('=', '_').replace(':', '-')}"
        if grids:
            shutil.copy(grids[-1], images / f"{name}.png")
        if grids and study in OVER_TRAINING:
            picked = [grids[round(i * (len(grids) - 1) / 3)] for i in range(4)] if len(grids) >= 4 else grids
            write_png(side_by_side(picked), str(images / f"{name}_over_training.png"))
    stem = out / f"experiments_{study}"
    plot(study, results, stem.with_suffix(".png"))
    stem.with_suffix(".json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    text = table(study, results)
    stem.with_suffix(".md").write_text(f"# {study}\n\n{json.dumps(meta)}\n\n{text}\n")
    print(text, flush=True)


def plot(study: str, results: list[dict], path: Path) -> None:
    """Each metric the runs logged against wall time (minutes since the run's first scalar): one colour per setting,
    one line style per seed."""
    settings = list(dict.fromkeys(r["setting"] for r in results))
    scalars = {r["run_dir"]: read_run_scalars(ROOT / r["run_dir"]) for r in results}
    start = {d: min((w for events in s.values() for w, _, _ in events), default=0.0) for d, s in scalars.items()}
    panels = []
    for key in METRICS:
        percent = key.startswith(("val/", "test/")) or key == "gen/cond_acc"
        lines = [
            Line(
                f"{r['setting']}, seed {r['seed']}",
                [
                    ((w - start[r["run_dir"]]) / 60, (100 if percent else 1) * v)
                    for w, _, v in sorted(scalars[r["run_dir"]].get(key, []), key=lambda e: e[1])
                ],
                color(settings.index(r["setting"])),
                style(r["seed"]),
            )
            for r in results
        ]
        panels.append(Panel(key, "wall time (min)", "%" if percent else "", lines=lines))
    save(panels, path, study)


def side_by_side(paths: list[Path]) -> torch.Tensor:
    """Sample grids (epochs of one run) in one row, 8 white pixels apart, as a uint8 image tensor."""
    grids = torch.stack([pil_to_tensor(Image.open(p).convert("RGB")) for p in paths])
    return make_grid(grids, nrow=len(paths), padding=8, pad_value=255)


if __name__ == "__main__":
    main()
