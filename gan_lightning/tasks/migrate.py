"""``task=migrate task.dir=outputs``: rename the test errors of runs written before the validation set existed.

Such runs (``data.val_size: 0`` in their ``.hydra/config.yaml``, no ``test/*`` scalar) evaluated on the official test
set and logged it as ``val/*``. In each of their TensorBoard event files this task renames ``val/<name>`` to
``test/<name>``, drops ``val/best_*`` (a best chosen on the test set) and points the CUSTOM SCALARS layout at the new
names, so TensorBoard shows old and new runs side by side under the same meaning. The original event files are kept in
``tb_events_before_migrate.zip`` beside ``tb/``; a run already migrated is left as it is.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

from omegaconf import DictConfig

from gan_lightning.errors import ConfigError
from gan_lightning.tbread import validated_separately

BACKUP = "tb_events_before_migrate.zip"
LAYOUT_TAG = "custom_scalars__config__"


def _new_tag(tag: str) -> str | None:
    if tag.startswith("val/best_"):
        return None
    return "test/" + tag.removeprefix("val/") if tag.startswith("val/") else tag


def _layout(serialized: bytes) -> bytes:
    """The CUSTOM SCALARS layout with its ``val/`` charts on the ``test/`` names (charts of a best dropped)."""
    from tensorboard.plugins.custom_scalar.layout_pb2 import Layout

    layout = Layout.FromString(serialized)
    for category in layout.category:
        keep = []
        for chart in category.chart:
            tags = list(chart.multiline.tag)
            if any(t.startswith("val/best_") for t in tags):
                continue
            del chart.multiline.tag[:]
            chart.multiline.tag.extend(("test/" + t.removeprefix("val/")) if t.startswith("val/") else t for t in tags)
            keep.append(chart)
        del category.chart[:]
        category.chart.extend(keep)
    return layout.SerializeToString()


def _rewrite(path: Path) -> int:
    """Rewrite one event file in place (through a temporary file); returns how many values were renamed."""
    from tensorboard.backend.event_processing.event_file_loader import RawEventFileLoader
    from tensorboard.compat.proto.event_pb2 import Event
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    tmp_dir = path.parent / ".migrate"
    tmp_dir.mkdir(exist_ok=True)
    writer = EventFileWriter(str(tmp_dir), filename_suffix="")
    renamed = 0
    for raw in RawEventFileLoader(str(path)).Load():  # as written (the converting loader turns scalars into tensors)
        event = Event.FromString(raw)
        if event.HasField("file_version"):
            continue  # the writer starts the new file with its own
        if event.HasField("summary"):
            values = list(event.summary.value)
            kept = []
            for value in values:
                if value.tag == LAYOUT_TAG:
                    value.tensor.string_val[0] = _layout(value.tensor.string_val[0])
                    kept.append(value)
                    continue
                tag = _new_tag(value.tag)
                renamed += tag != value.tag
                if tag is not None:
                    value.tag = tag
                    kept.append(value)
            del event.summary.value[:]
            event.summary.value.extend(kept)
            if not kept:
                continue
        writer.add_event(event)
    writer.close()
    written = next(tmp_dir.glob("events.out.tfevents.*"))
    written.replace(path)
    tmp_dir.rmdir()
    return renamed


def needs_migration(run_dir: Path) -> bool:
    from gan_lightning.tbread import read_scalars

    tb = run_dir / "tb"
    if not tb.is_dir() or validated_separately(run_dir) or (run_dir / BACKUP).exists():
        return False
    tags = read_scalars(tb)
    return any(t.startswith("val/") for t in tags) and not any(t.startswith("test/") for t in tags)


def migrate(cfg: DictConfig, dir: str | None = None) -> list[Path]:
    """Migrate every run under ``dir`` (a run directory or any folder above runs); returns the runs migrated."""
    if not dir or not Path(dir).is_dir():
        raise ConfigError(
            f"task.dir={dir} is not a directory; give a run directory or a folder of runs, e.g. task.dir=outputs"
        )
    runs = sorted({p.parent.parent for p in Path(dir).rglob(".hydra/config.yaml")})
    done = []
    for run in runs:
        if not needs_migration(run):
            continue
        files = sorted((run / "tb").rglob("events.out.tfevents.*"))
        with zipfile.ZipFile(run / BACKUP, "w", zipfile.ZIP_DEFLATED) as backup:
            for f in files:
                backup.write(f, f.relative_to(run))
        renamed = sum(_rewrite(f) for f in files)
        print(f"{run}: {renamed} values renamed val/ -> test/ (originals in {BACKUP})")
        done.append(run)
    print(f"{len(done)} of {len(runs)} runs migrated" + ("" if done else " (none written before the validation set)"))
    return done
