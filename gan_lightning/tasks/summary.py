"""``task=summary task.dir=outputs/multirun/<date>/<time>``: one table of a sweep, overrides -> final metrics.

Runs that differ only by ``seed`` are grouped (mean ± std over seeds) and ranked by the first metric, a validation
metric (``val/*``: the test set ranks nothing); ``test/*`` columns are shown beside it. Writes ``summary.csv``,
``summary.md`` and ``summary.png`` (each metric per setting, ranked) into the sweep directory and prints the table. Runs
written before the validation set existed have their ``val/*`` test errors read as ``test/*``
(``tbread.read_run_scalars``).
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import yaml
from omegaconf import DictConfig

from gan_lightning.errors import ConfigError
from gan_lightning.selection import check_metric
from gan_lightning.tbread import read_run_scalars


def collect(sweep_dir: Path, metrics: list[str]) -> list[dict]:
    rows = []
    for overrides_file in sorted(sweep_dir.glob("*/.hydra/overrides.yaml")):
        job = overrides_file.parent.parent
        overrides = [o for o in yaml.safe_load(overrides_file.read_text()) or [] if not o.startswith("hydra.")]
        scalars = read_run_scalars(job)
        final = {m: scalars[m][-1][2] for m in metrics if scalars.get(m)}
        result = job / "result.json"
        pruned = json.loads(result.read_text()).get("pruned_at_epoch") if result.is_file() else None
        rows.append({"job": job.name, "overrides": overrides, "pruned": pruned, **final})
    return rows


def common_overrides(rows: list[dict]) -> list[str]:
    """Overrides every run of the sweep shares (shown once, above the table)."""
    if len(rows) < 2:
        return []
    shared = set.intersection(*(set(r["overrides"]) for r in rows))
    return [o for o in rows[0]["overrides"] if o in shared]


def summarize(rows: list[dict], metrics: list[str]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    common = set(common_overrides(rows))
    for r in rows:
        key = tuple(o for o in r["overrides"] if not o.startswith("seed=") and o not in common)
        groups.setdefault(key, []).append(r)
    table = []
    for key, members in groups.items():
        pruned = [m["pruned"] + 1 for m in members if m.get("pruned") is not None]
        entry = {
            "overrides": " ".join(key) or "(defaults)",
            "runs": len(members),
            "pruned": ", ".join(f"epoch {e}" for e in pruned) or "–",
        }
        for m in metrics:
            values = [r[m] for r in members if m in r]
            entry[m] = statistics.fmean(values) if values else float("nan")
            entry[m + " std"] = statistics.stdev(values) if len(values) > 1 else 0.0
        table.append(entry)
    return sorted(table, key=lambda e: e[metrics[0]] if e[metrics[0]] == e[metrics[0]] else float("inf"))


def summary(cfg: DictConfig, dir: str | None = None, metrics: list[str] | None = None) -> None:
    if not dir or not Path(dir).is_dir():
        raise ConfigError(
            f"task.dir={dir} is not a directory; give a multirun directory, "
            "e.g. task.dir=outputs/multirun/<date>/<time>"
        )
    sweep_dir = Path(dir)
    metrics = list(metrics or ["val/best_err_ema", "val/err_ema", "test/err_ema"])
    check_metric("task.metrics[0] (the ranking)", metrics[0])
    rows = collect(sweep_dir, metrics)
    if not rows:
        raise ConfigError(f"no runs (*/.hydra/overrides.yaml) under {sweep_dir}")
    table = summarize(rows, metrics)
    with (sweep_dir / "summary.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    lines = [
        "| overrides | runs | " + " | ".join(metrics) + " | pruned after |",
        "|---|---|" + "---|" * len(metrics) + "---|",
    ]
    for e in table:
        cells = [f"{e[m]:.4f} ± {e[m + ' std']:.4f}" for m in metrics]
        lines.append(f"| {e['overrides']} | {e['runs']} | " + " | ".join(cells) + f" | {e['pruned']} |")
    common = common_overrides(rows)
    text = ("Every run: `" + " ".join(common) + "`\n\n" if common else "") + "\n".join(lines)
    (sweep_dir / "summary.md").write_text(text + "\n")
    plot(table, metrics, sweep_dir / "summary.png")
    print(text)


def plot(table: list[dict], metrics: list[str], path: Path) -> None:
    """One panel per metric: each setting's mean (bar) and its runs' spread (± SD), in the table's order (ranked)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [e["overrides"] if len(e["overrides"]) <= 40 else e["overrides"][:37] + "..." for e in table]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4 + 3 * len(metrics), 1.5 + 0.35 * len(table)), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        means = [e[metric] for e in table]
        ax.barh(range(len(table)), means, xerr=[e[metric + " std"] for e in table], color="tab:blue", alpha=0.8)
        ax.set_yticks(range(len(table)), labels if ax is axes[0][0] else [""] * len(table), fontsize=8)
        ax.invert_yaxis()  # the best first
        ax.set_title(metric + (" (ranks)" if metric == metrics[0] else ""), fontsize=9)
        ax.grid(True, axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
