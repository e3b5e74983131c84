"""Read scalars back from a run's TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

import yaml
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


def validated_separately(run_dir: str | Path) -> bool:
    """Whether a run's ``val/*`` scalars are a validation set's. Runs written before the validation set was held out
    of the training images (their config says ``data.val_size: 0`` and they logged no ``test/*``) named their test
    errors ``val/*``."""
    config = Path(run_dir) / ".hydra" / "config.yaml"
    if not config.is_file():
        return True
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    return data.get("val_size", 0) != 0


def read_run_scalars(run_dir: str | Path) -> dict[str, list[tuple[float, int, float]]]:
    """The scalars of a run directory (its ``tb/``), with the test errors of older runs under their current names:
    ``val/err_*`` -> ``test/err_*`` where ``val/*`` was the test set (``validated_separately``); their ``val/best_*``
    (a best chosen on the test set) is dropped."""
    run_dir = Path(run_dir)
    scalars = read_scalars(run_dir / "tb") if (run_dir / "tb").is_dir() else {}
    if any(tag.startswith("test/") for tag in scalars) or validated_separately(run_dir):
        return scalars
    renamed = {}
    for tag, values in scalars.items():
        if tag.startswith("val/best_"):
            continue
        renamed["test/" + tag.removeprefix("val/") if tag.startswith("val/") else tag] = values
    return renamed
