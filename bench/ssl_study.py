"""Where the game pays: Triple-GAN's fast preset against its ablation, paired on the same labeled splits, in the hour.

    python -m bench.ssl_study                           # run the queue's next pairs, appending each pair's rows
    python -m bench.ssl_study --stop-by 23:40 --commit  # start a pair only if it ends by 23:40; commit each pair's rows
    python -m bench.ssl_study --splits 5 --max-pairs 1  # the next pair on labeled split 5, ahead of the queue's order
    python -m bench.ssl_study --report                  # tables and plots from the results file, no runs
    python -m bench.ssl_study --report --preset b311edfd11  # an earlier preset version's: ssl_study_b311edfd11.md, ...
    python -m bench.ssl_study --minutes 15 --results bench/results/runs/proxy.json \\
        --game-extra model.schedule.adv_warmup_epochs=2  # a short proxy study, to choose a setting by validation error

A pair is the game (``experiment=triple_gan_mnist100_fast``) and its ablation (the same classifier training for the
whole time, no game), started together, each pinned to one core with one thread, each for ``--minutes`` of
``trainer.max_time``: same hardware, same wall time. The queue is every setting of the study in order (100 labels on
splits 1-5, then 50 and 20 labels on splits 1-3); a pair whose two rows are in the results file is done, so a
stopped study goes on where it stopped. Rows are filed under the preset's version (a digest of its composed config):
a changed preset starts the queue afresh. Each row (one run) records the final epoch's EMA C error on the validation
set (held-out training images) and on the test set, G's conditional accuracy and FID (game rows), the curve of both
errors against wall time, the CPU's model and flags, and the command. ``--report`` writes, per setting, the mean ± SD
of each run over the splits and the paired difference (game - ablation) with its 95 % t interval
(``bench/results/ssl_study.md``) and one plot (``docs/ssl_study_<n>labels.png``). Nothing in the study is chosen by
the test error: the headline is the last epoch's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.mnist100 import cpu_flags
from bench.plots import color, error_curves
from gan_lightning.tbread import read_run_scalars

RESULTS = Path("bench/results/ssl_study.json")
REPORT = Path("bench/results/ssl_study.md")
PLOTS = Path("docs")
SETTINGS = ((100, (1, 2, 3, 4, 5)), (50, (1, 2, 3)), (20, (1, 2, 3)))  # (labels, labeled splits): the queue, in order
RUNS = {
    "game": ["experiment=triple_gan_mnist100_fast"],
    # the same classifier training (augmentation, consistency, confident labels, optimizer) for the whole time
    "ablation": [
        "experiment=triple_gan_mnist100_fast",
        "model.schedule.pretrain_epochs=100000",
        "model.schedule.pretrain_time_share=null",
        "model.epochs=0",
    ],
}
OVERHEAD_MIN = 3.0  # start-up, the last evaluation and the generator metrics after max_time (measured: 1-2 min)
# two-sided 95 % quantiles of Student's t by degrees of freedom (1-10); 1.96 beyond
T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


# a preset version whose composed config differs from an earlier one's only in how the config is laid out (keys moved,
# the same values): its rows continue the earlier version's queue. Each entry is backed by the same-seed test of the
# games' losses (tests/models/test_same_losses.py), which passed on the code of both.
SAME_PRESET: dict[str, str] = {
    "7b58972d05": "b311edfd11",  # settings moved into model.schedule, .fidelity, ...; nets under model
    # n_labeled moved from model to data; G's EMA copy (then model.g_ema_decay; null: off, as before); the generator
    # metrics' config node not built recursively (its extra metrics: none here)
    "12c21de7e3": "b311edfd11",
    # grid_columns, grid_seed and g_ema_decay moved into model.samples (grid: null, 10 columns for a conditional game)
    "5042538fe4": "b311edfd11",
    # the preset with cutout: RandomErase's fill value written out (its default, 0.0)
    "27dc5ac5f9": "6e076e26ff",
}


def time_of_day(text: str) -> tuple[int, int]:
    """``--stop-by``'s HH:MM, checked (argparse turns the error into one line and exit status 2)."""
    hour, sep, minute = text.partition(":")
    if sep and hour.isdecimal() and minute.isdecimal() and int(hour) < 24 and int(minute) < 60:
        return int(hour), int(minute)
    raise argparse.ArgumentTypeError(f"takes a time of day HH:MM (00:00 to 23:59), not {text!r}")


def deadline(hour: int, minute: int, now: float) -> float:
    """The first moment at or after ``now`` when the clock shows hour:minute: tomorrow's if today's has passed."""
    day = time.localtime(now)
    today = time.mktime((day.tm_year, day.tm_mon, day.tm_mday, hour, minute, 0, 0, 0, -1))
    if today >= now:
        return today
    tomorrow = time.localtime(now + 86400)
    return time.mktime((tomorrow.tm_year, tomorrow.tm_mon, tomorrow.tm_mday, hour, minute, 0, 0, 0, -1))


def preset_version() -> str:
    """10 hex digits of the preset's composed config (model, data, trainer and callbacks, interpolations unresolved):
    another setting or default gives another version, a comment does not. Rows of different versions are never paired
    or pooled."""
    import hashlib

    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from gan_lightning.schema import register

    register()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parent.parent / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[RUNS["game"][0]])
    text = "".join(OmegaConf.to_yaml(cfg[key]) for key in ("model", "data", "trainer", "callbacks"))
    version = hashlib.sha1(text.encode()).hexdigest()[:10]
    return SAME_PRESET.get(version, version)


def queue(minutes: float, preset: str) -> list[dict[str, Any]]:
    """Every pair of the study, in the order they run."""
    return [
        {"dataset": "mnist", "n_labeled": n, "label_seed": s, "minutes": minutes, "preset": preset}
        for n, seeds in SETTINGS
        for s in seeds
    ]


def pair_key(row: dict) -> tuple:
    return (row["dataset"], row["n_labeled"], row["label_seed"], row["minutes"], row["preset"])


def load_rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"] if path.is_file() else []


def append_rows(path: Path, rows: list[dict]) -> None:
    """Add rows to the results file atomically (a kill while writing leaves the previous file whole)."""
    data = {
        "description": "bench/ssl_study.py: one row per run (game or ablation); the headline is the last epoch's "
        "test error",
        "rows": load_rows(path) + rows,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(tmp, path)


def overrides(run: str, pair: dict, extra: list[str], game_extra: list[str]) -> list[str]:
    minutes = pair["minutes"]
    max_time = f"00:{int(minutes) // 60:02d}:{int(minutes) % 60:02d}:{round(60 * (minutes % 1)):02d}"
    return [
        *RUNS[run],
        f"data.n_labeled={pair['n_labeled']}",
        f"data.label_seed={pair['label_seed']}",
        f"trainer.max_time={max_time}",
        *extra,
        *(game_extra if run == "game" else []),
    ]


def launch(args: list[str], run_dir: Path, core: int | None) -> subprocess.Popen:
    """One CLI run, pinned to ``core`` with one thread (the pair shares the machine evenly), its output in a log."""
    cmd = [sys.executable, "-m", "gan_lightning", *args, f"hydra.run.dir={run_dir}"]
    env = dict(os.environ)
    if core is not None:
        cmd = ["taskset", "-c", str(core), *cmd]
        env["OMP_NUM_THREADS"] = "1"
    run_dir.mkdir(parents=True, exist_ok=True)
    print("$", shlex.join(cmd), flush=True)
    with (run_dir.parent / f"{run_dir.name}.log").open("w") as log:
        return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)


def read_row(run: str, pair: dict, args: list[str], run_dir: Path, start: float, commit: str) -> dict:
    """A finished run's row: its last epoch's errors and G's metrics, and the curve of both errors by wall time."""
    scalars = read_run_scalars(run_dir)
    series = {
        tag: {step: (wall, value) for wall, step, value in scalars.get(tag, [])}
        for tag in ("val/err_ema", "test/err_ema", "val/err_c", "test/err_c", "gen/cond_acc", "gen/fid", "epoch")
    }
    steps = sorted(series["test/err_ema"])
    curve = [
        {
            "minutes": round((series["test/err_ema"][s][0] - start) / 60, 2),
            "epoch": int(series["epoch"].get(s, (0, -1))[1]),
            "val_err_ema": series["val/err_ema"].get(s, (0, None))[1],
            "test_err_ema": series["test/err_ema"][s][1],
        }
        for s in steps
    ]
    last = lambda tag: series[tag][max(series[tag])][1] if series[tag] else None
    return {
        **pair,
        "run": run,
        "final_test_err_ema": last("test/err_ema"),
        "final_val_err_ema": last("val/err_ema"),
        "final_test_err_c": last("test/err_c"),
        "final_val_err_c": last("val/err_c"),
        "g_cond_acc": last("gen/cond_acc") if run == "game" else None,
        "g_fid": last("gen/fid") if run == "game" else None,
        "epochs": int(curve[-1]["epoch"] or 0) + 1 if curve else 0,
        "wall_minutes": round((time.time() - start) / 60, 1),
        "cpu": cpu_flags(),
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "command": "python -m gan_lightning " + shlex.join(args),
        "curve": curve,
    }


def _commit() -> str:
    proc = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return proc.stdout.strip() or "unknown"


def run_pair(pair: dict, root: Path, extra: list[str], game_extra: list[str]) -> list[dict]:
    cores = sorted(os.sched_getaffinity(0))
    pinned = len(cores) >= 2
    name = f"{pair['dataset']}{pair['n_labeled']}_split{pair['label_seed']}_{pair['minutes']:g}min_{pair['preset']}"
    start, commit = time.time(), _commit()  # the code the runs start with
    procs = {}
    for i, run in enumerate(RUNS):
        args = overrides(run, pair, extra, game_extra)
        procs[run] = (args, root / f"{name}_{run}", launch(args, root / f"{name}_{run}", cores[i] if pinned else None))
    for run, (_, run_dir, proc) in procs.items():
        if proc.wait():
            raise SystemExit(f"error: the {run} run of {name} failed (exit {proc.returncode}); its log: {run_dir}.log")
    return [read_row(run, pair, args, run_dir, start, commit) for run, (args, run_dir, _) in procs.items()]


def commit(path: Path, pair: dict) -> None:
    subprocess.run(["git", "add", str(path)], check=True)
    subprocess.run(
        [
            "git",
            "commit",
            "-q",
            "-m",
            f"SSL study: {pair['n_labeled']} labels, split {pair['label_seed']}, "
            f"{pair['minutes']:g} min, game and ablation",
            "--",
            str(path),
        ],
        check=True,
    )


# -- report ------------------------------------------------------------------------------------------------------------
def paired(rows: list[dict], n_labeled: int, key: str) -> dict[str, Any]:
    """Per split: the game's and the ablation's ``key``; their mean ± SD and the paired difference with its 95 %
    interval."""
    by = {(r["label_seed"], r["run"]): r[key] for r in rows if r["n_labeled"] == n_labeled and r.get(key) is not None}
    splits = sorted({s for s, run in by if run == "game"} & {s for s, run in by if run == "ablation"})
    game, abl = [by[(s, "game")] for s in splits], [by[(s, "ablation")] for s in splits]
    diff = [g - a for g, a in zip(game, abl)]
    out: dict[str, Any] = {"splits": splits, "game": game, "ablation": abl, "diff": diff}
    if len(diff) > 1:
        half = T95.get(len(diff) - 1, 1.96) * statistics.stdev(diff) / math.sqrt(len(diff))
        out["diff_ci"] = (statistics.mean(diff) - half, statistics.mean(diff) + half)
    return out


def _ms(values: list[float], scale: float = 100.0, unit: str = " %") -> str:
    if not values:
        return "–"
    sd = f" ± {scale * statistics.stdev(values):.2f}" if len(values) > 1 else ""
    return f"{scale * statistics.mean(values):.2f}{sd}{unit}"


def report(rows: list[dict], results: Path) -> str:
    presets = sorted({r["preset"] for r in rows})
    lines = [
        f"# Triple-GAN against its ablation, MNIST (`python -m bench.ssl_study --report`, rows: `{results}`, preset "
        f"version {', '.join(presets)})",
        "",
    ]
    for n_labeled in sorted({r["n_labeled"] for r in rows}, reverse=True):
        test, val = paired(rows, n_labeled, "final_test_err_ema"), paired(rows, n_labeled, "final_val_err_ema")
        games = [r for r in rows if r["n_labeled"] == n_labeled and r["run"] == "game"]
        minutes = sorted({r["minutes"] for r in rows if r["n_labeled"] == n_labeled})
        cpus = sorted({r["cpu"]["cpu"] for r in rows if r["n_labeled"] == n_labeled})
        lines += [
            f"## {n_labeled} labels ({', '.join(f'{m:g}' for m in minutes)} min a run; CPU: {', '.join(cpus)})",
            "",
            "| labeled split | game: test EMA C | ablation: test EMA C | difference | game: val EMA C "
            "| ablation: val EMA C | G: cond. acc. | G: FID | epochs (game / ablation) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for s in test["splits"]:
            g = next(r for r in games if r["label_seed"] == s)
            a = next(r for r in rows if r["n_labeled"] == n_labeled and r["run"] == "ablation" and r["label_seed"] == s)
            pct = lambda v: "–" if v is None else f"{100 * v:.2f} %"
            num = lambda v: "–" if v is None else f"{v:.2f}"
            lines.append(
                f"| {s} | {pct(g['final_test_err_ema'])} | {pct(a['final_test_err_ema'])} "
                f"| {100 * (g['final_test_err_ema'] - a['final_test_err_ema']):+.2f} | {pct(g['final_val_err_ema'])} "
                f"| {pct(a['final_val_err_ema'])} | {pct(g['g_cond_acc'])} | {num(g['g_fid'])} "
                f"| {g['epochs']} / {a['epochs']} |"
            )
        ci = test.get("diff_ci")
        diff = (
            f"{100 * statistics.mean(test['diff']):+.2f}" + (f" [{100 * ci[0]:+.2f}, {100 * ci[1]:+.2f}]" if ci else "")
            if test["diff"]
            else "–"
        )
        n = len(test["splits"])
        lines.append(
            f"| mean ± SD ({n} split{'s' if n > 1 else ''}) | {_ms(test['game'])} | {_ms(test['ablation'])} | {diff} "
            f"| {_ms(val['game'])} | {_ms(val['ablation'])} "
            f"| {_ms([r['g_cond_acc'] for r in games if r['g_cond_acc'] is not None])} "
            f"| {_ms([r['g_fid'] for r in games if r['g_fid'] is not None], 1.0, '')} | |"
        )
        lines += [
            "",
            "Difference: game minus ablation, points of test error, mean over the splits [95 % t interval].",
            "",
        ]
    return "\n".join(lines)


def plot(rows: list[dict], n_labeled: int, path: Path) -> None:
    """EMA C error (validation and test) against wall time, game and ablation, one line per split."""
    runs = [r for r in rows if r["n_labeled"] == n_labeled]
    keys = (("val_err_ema", "validation (held-out training images)"), ("test_err_ema", "test"))
    title = f"MNIST, {n_labeled} labels: Triple-GAN (blue) against its ablation (orange)"
    error_curves(runs, path, title, keys, lambda p: p["minutes"], lambda r: color(r["run"] != "game"))


def write_report(rows: list[dict], results: Path, report_path: Path, plots: Path, stem: str = "ssl_study") -> None:
    text = report(rows, results)
    report_path.write_text(text + "\n")
    for n_labeled in sorted({r["n_labeled"] for r in rows}):
        plot(rows, n_labeled, plots / f"{stem}_{n_labeled}labels.png")
    print(text)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=60.0, help="trainer.max_time of every run (default: the hour)")
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--max-pairs", type=int, default=None, help="stop after this many pairs")
    parser.add_argument(
        "--stop-by",
        metavar="HH:MM",
        type=time_of_day,
        help="start a pair only if it can end by this time of day (the next one: past midnight when it is earlier "
        "than now)",
    )
    parser.add_argument("--commit", action="store_true", help="git-commit the results file after each pair")
    parser.add_argument("--only", nargs="+", type=int, metavar="N_LABELED", help="only these settings of the queue")
    parser.add_argument("--splits", nargs="+", type=int, metavar="SEED", help="only these labeled splits (label seeds)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides for both runs")
    parser.add_argument("--game-extra", nargs="*", default=[], help="overrides for the game only")
    parser.add_argument(
        "--preset",
        help="the preset version the rows are filed under (default: the digest of the preset's "
        "config; runs with --extra/--game-extra should name their own)",
    )
    parser.add_argument("--runs-dir", type=Path, default=Path("bench/results/runs/ssl_study"))
    parser.add_argument(
        "--report", action="store_true", help="no runs: write the tables and plots from the results file"
    )
    parser.add_argument(
        "--report-to", type=Path, default=None, help="with --report: the Markdown file (default beside the results)"
    )
    parser.add_argument("--plots", type=Path, default=PLOTS)
    args = parser.parse_args(argv)
    if args.report:
        rows = load_rows(args.results)
        if not rows:
            raise SystemExit(f"error: {args.results} holds no rows; run the study first")
        latest = rows[-1]["preset"]
        preset = args.preset or latest  # the preset of the latest rows, unless asked for another
        rows = [r for r in rows if r["preset"] == preset]
        if not rows:
            raise SystemExit(f"error: {args.results} holds no rows of preset version {preset}")
        # an earlier version's report and plots are named after it, so that they never replace the latest's
        default = REPORT if args.results == RESULTS else args.results.with_suffix(".md")
        suffix = "" if preset == latest else f"_{preset}"
        write_report(
            rows,
            args.results,
            args.report_to or default.with_stem(default.stem + suffix),
            args.plots,
            "ssl_study" + suffix,
        )
        return
    if (args.extra or args.game_extra) and not args.preset:
        raise SystemExit(
            "error: --extra/--game-extra change the runs: name them with --preset (rows are filed under it)"
        )
    done = {pair_key(r) for r in load_rows(args.results) if r["run"] == "game"} & {
        pair_key(r) for r in load_rows(args.results) if r["run"] == "ablation"
    }
    version = args.preset or preset_version()
    pairs = queue(args.minutes, version)
    todo = [
        p
        for p in pairs
        if pair_key(p) not in done
        and (not args.only or p["n_labeled"] in args.only)
        and (not args.splits or p["label_seed"] in args.splits)
    ]
    print(
        f"{len(todo)} pairs of {args.minutes:g} min to run, preset version {version} "
        f"({sum(pair_key(p) in done for p in pairs)} of its {len(pairs)} done in {args.results})",
        flush=True,
    )
    limit = deadline(args.stop_by[0], args.stop_by[1], time.time()) if args.stop_by else math.inf
    for i, pair in enumerate(todo[: args.max_pairs]):
        ends = time.time() + 60 * (args.minutes + OVERHEAD_MIN)
        if ends > limit:
            print(
                f"stopping: the next pair would end at {time.strftime('%a %H:%M', time.localtime(ends))}, "
                f"after {time.strftime('%a %H:%M', time.localtime(limit))}"
            )
            return
        print(
            f"pair {i + 1}/{len(todo)}: {pair['n_labeled']} labels, split {pair['label_seed']}; ends about "
            f"{time.strftime('%H:%M', time.localtime(ends))}",
            flush=True,
        )
        rows = run_pair(pair, args.runs_dir, args.extra, args.game_extra)
        append_rows(args.results, rows)
        for r in rows:
            print(
                f"  {r['run']}: test EMA C {100 * r['final_test_err_ema']:.2f} %, "
                f"val EMA C {100 * r['final_val_err_ema']:.2f} %, "
                f"{r['epochs']} epochs",
                flush=True,
            )
        if args.commit:
            commit(args.results, pair)


if __name__ == "__main__":
    main()
