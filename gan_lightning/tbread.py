"""Read scalars back from a run's TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def read_scalars(run_dir: str | Path) -> dict[str, list[tuple[float, int, float]]]:
    """``{tag: [(wall_time, step, value), ...]}`` from every event file under ``run_dir``."""
    out: dict[str, list[tuple[float, int, float]]] = {}
    for path in sorted(Path(run_dir).rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        for tag in acc.Tags()["scalars"]:
            out.setdefault(tag, []).extend((e.wall_time, e.step, e.value) for e in acc.Scalars(tag))
    return out
