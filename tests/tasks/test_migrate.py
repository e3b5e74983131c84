"""Runs written before the validation set existed: their ``val/*`` test errors are read, and can be rewritten, as
``test/*``."""

from __future__ import annotations

import zipfile

import pytest
from conftest import run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.tensorboard import SummaryWriter

from gan_lightning.tasks.summary import collect
from gan_lightning.tbread import read_run_scalars

OLD_LAYOUT = {
    "test error": {
        "C and EMA C (test error)": ["Multiline", [r"val/err_c$", r"val/err_ema$"]],
        "best so far": ["Multiline", [r"val/best_err_.*"]],
    }
}


def _old_run(run_dir, val_size: int = 0, errs=(0.05, 0.03)) -> None:
    """A run directory as older versions wrote it: test errors logged as val/*, with a best chosen on them."""
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text(f"data:\n  val_size: {val_size}\n")
    (run_dir / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    writer = SummaryWriter(str(run_dir / "tb"))
    writer.add_custom_scalars(OLD_LAYOUT)
    for step, err in enumerate(errs):
        writer.add_scalar("val/err_ema", err, step)
        writer.add_scalar("val/best_err_ema", min(errs[: step + 1]), step)
        writer.add_scalar("train/c/loss", 1.0 / (step + 1), step)
    writer.close()


def test_old_runs_are_read_with_their_test_errors_under_test(tmp_path):
    _old_run(tmp_path / "old")
    _old_run(tmp_path / "held_out", val_size=5000)  # a validation set of its own: val/* stays val/*
    old, held = read_run_scalars(tmp_path / "old"), read_run_scalars(tmp_path / "held_out")
    assert [v for _, _, v in old["test/err_ema"]] == pytest.approx([0.05, 0.03])
    assert "train/c/loss" in old
    assert not any(t.startswith("val/") for t in old)  # no best chosen on the test set survives
    assert "val/err_ema" in held
    assert "test/err_ema" not in held
    rows = {r["job"]: r for r in collect(tmp_path, ["val/best_err_ema", "test/err_ema"])}
    assert rows["old"]["test/err_ema"] == pytest.approx(0.03)
    assert "val/best_err_ema" not in rows["old"]


@pytest.mark.slow
def test_migrate_task_rewrites_old_event_files_and_keeps_the_originals(tmp_path):
    runs = tmp_path / "outputs"
    _old_run(runs / "2026-01-01" / "10-00-00")
    _old_run(runs / "2026-01-01" / "11-00-00", val_size=5000)
    proc = run_cli(["task=migrate", f"task.dir={runs}"], tmp_path / "migrate_run")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "1 of 2 runs migrated" in proc.stdout
    old = runs / "2026-01-01" / "10-00-00"
    acc = EventAccumulator(str(old / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    assert set(acc.Tags()["scalars"]) == {"test/err_ema", "train/c/loss"}
    assert [e.value for e in acc.Scalars("test/err_ema")] == pytest.approx([0.05, 0.03])
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.custom_scalar import layout_pb2

    values = [
        v
        for f in sorted((old / "tb").glob("events.out.tfevents.*"))
        for e in EventFileLoader(str(f)).Load()
        if e.HasField("summary")
        for v in e.summary.value
        if v.tag == "custom_scalars__config__"
    ]
    layout = layout_pb2.Layout.FromString(values[0].tensor.string_val[0])
    charts = {c.title: list(c.multiline.tag) for cat in layout.category for c in cat.chart}
    assert charts == {"C and EMA C (test error)": ["test/err_c$", "test/err_ema$"]}
    with zipfile.ZipFile(old / "tb_events_before_migrate.zip") as backup:
        assert any(n.startswith("tb/events.out.tfevents") for n in backup.namelist())
    again = run_cli(["task=migrate", f"task.dir={runs}"], tmp_path / "migrate_again")
    assert again.returncode == 0
    assert "0 of 2 runs migrated" in again.stdout
