"""The benchmarks' pictures: panels of curves (a quantity against wall time or steps), one line per run, in one PNG."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

STYLES = ("-", "--", ":", "-.", (0, (6, 1.5, 1, 1.5, 1, 1.5)))  # one line style per seed or split (5th: dash-dot-dot)
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:gray")


@dataclass
class Line:
    label: str
    points: Sequence[tuple[float, float]]  # (x, y)
    color: str = "tab:blue"
    style: str | tuple = "-"


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str = ""
    log: bool = False  # a logarithmic y axis (errors that fall by orders of magnitude)
    lines: list[Line] = field(default_factory=list)


def style(i: int) -> str | tuple:
    """The line style of the ``i``-th seed or split (1-based), cycling."""
    return STYLES[(i - 1) % len(STYLES)]


def color(i: int) -> str:
    """The colour of the ``i``-th setting (0-based), cycling."""
    return COLORS[i % len(COLORS)]


def error_curves(
    runs: Sequence[dict],
    path: Path,
    title: str,
    keys: Sequence[tuple[str, str]],
    minutes: Callable[[dict], float],
    colour: Callable[[dict], str],
) -> None:
    """EMA C error against wall time, a panel per ``(key, name)`` of ``keys`` (e.g. validation and test), one line per
    run and labeled split (``runs``: rows with ``run``, ``label_seed`` and a ``curve`` of points)."""
    panels = [
        Panel(f"EMA C error, {name}", "wall time (min)", "error (%)", log=True, lines=[
            Line(f"{r['run']}, split {r['label_seed']}",
                 [(minutes(p), 100 * p[key]) for p in r["curve"] if p.get(key) is not None],
                 colour(r), style(r["label_seed"]))
            for r in runs
        ])
        for key, name in keys
    ]  # fmt: skip
    save(panels, path, title, share_y=True)


def save(panels: Sequence[Panel], path: Path, title: str, share_y: bool = False) -> None:
    """``panels`` side by side in one PNG at ``path`` (panels without a line are left out; nothing is written when
    none has one)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FormatStrFormatter

    panels = [p for p in panels if any(line.points for line in p.lines)]
    if not panels:
        return
    fig, axes = plt.subplots(1, len(panels), figsize=(1 + 5 * len(panels), 4), sharey=share_y, squeeze=False)
    for ax, panel in zip(axes[0], panels):
        for line in panel.lines:
            if line.points:
                ax.plot(*zip(*line.points), color=line.color, ls=line.style, lw=1.2, alpha=0.85, label=line.label)
        ax.set(title=panel.title, xlabel=panel.xlabel, ylabel=panel.ylabel)
        if panel.log:
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.1f"))
            ax.yaxis.set_minor_formatter(FormatStrFormatter("%.1f"))
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, ncol=2)
    fig.suptitle(title)
    write(fig, path, dpi=110)


def write(fig, path: Path, dpi: int) -> None:
    """A finished matplotlib figure to a PNG at ``path`` (its folder made), then closed."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
