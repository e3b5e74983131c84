"""docs/extending.md's worked examples, written exactly as printed into a copy of the package and conf/, then trained,
sampled and evaluated through the CLI of that copy: the recipes' file lists are complete and their code runs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DATA_ROOT, ROOT, library_noise, needs_mnist

from gan_lightning.data import MNISTDataModule
from gan_lightning.tbread import read_scalars

pytestmark = [needs_mnist, pytest.mark.slow, pytest.mark.xdist_group("extending")]

# a file's path in backquotes, optionally "(added at the end)", a colon, then its fenced code block
EXAMPLE = re.compile(r"^`([\w/.]+)`( \(added at the end\))?:\n\n```\w+\n(.*?)^```", re.M | re.S)


def examples() -> dict[str, tuple[str, bool]]:
    """{path: (code, whether it is added to an existing file)} of every worked example on the page."""
    text = (ROOT / "docs" / "extending.md").read_text()
    return {path: (code, bool(added)) for path, added, code in EXAMPLE.findall(text)}


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The package and conf/ with every worked example's files written in."""
    root = tmp_path_factory.mktemp("extended")
    shutil.copytree(ROOT / "gan_lightning", root / "gan_lightning", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(ROOT / "conf", root / "conf")
    for path, (code, added) in examples().items():
        target = root / path
        assert added == target.exists(), f"{path}: the page says {'added to' if added else 'new'}, the tree disagrees"
        target.write_text((target.read_text() + "\n\n" if added else "") + code)
    return root


def run(tree: Path, args: list[str], run_dir: Path, data_root: Path) -> subprocess.CompletedProcess:
    """``python -m gan_lightning ARGS`` of the copy (its directory first on the import path)."""
    env = {**os.environ, "GAN_LIGHTNING_DATA": str(data_root), "GAN_LIGHTNING_REFERENCE": str(run_dir.parent / "none")}
    cmd = [sys.executable, "-m", "gan_lightning", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def test_the_page_has_a_worked_example_for_a_game_a_dataset_and_a_metric():
    assert set(examples()) == {
        "gan_lightning/models/hinge_gan.py",
        "conf/model/hinge_cdcgan.yaml",
        "gan_lightning/data/datamodule.py",
        "conf/data/kmnist.yaml",
        "gan_lightning/evaluation/diversity.py",
    }


def test_the_new_game_trains_samples_and_logs_its_losses(tree, tmp_path):
    proc = run(tree, ["model=hinge_cdcgan", "trainer=debug"], tmp_path / "train", DATA_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert library_noise(proc.stdout + proc.stderr) == []
    scalars = read_scalars(tmp_path / "train" / "tb")
    assert len(scalars["train/d/loss"]) == len(scalars["train/g/loss"]) == 8  # 2 epochs of 4 batches, logged each
    assert any((tmp_path / "train" / "samples").glob("*.png"))  # the fixed-noise grid of a generating game
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    proc = run(tree, ["task=sample", f"ckpt_path={ckpt}", "task.n=20"], tmp_path / "sample", DATA_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]  # its checkpoint rebuilds the game from the stored config
    assert (tmp_path / "sample" / "classes.png").is_file()


def _write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def test_the_new_dataset_serves_a_semi_supervised_run(tree, tmp_path):
    """KMNIST's files (here MNIST's first images written in its place) serve labeled, unlabeled, validation and
    test images to the supervised baseline."""
    mnist = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, download=False)
    mnist.setup()
    raw = tmp_path / "data" / "KMNIST" / "raw"
    raw.mkdir(parents=True)
    splits = mnist.splits
    _write_idx(raw / "train-images-idx3-ubyte", splits.train_x[:3000, 0].numpy())
    _write_idx(raw / "train-labels-idx1-ubyte", splits.train_y[:3000].numpy())
    _write_idx(raw / "t10k-images-idx3-ubyte", splits.test_x[:500, 0].numpy())
    _write_idx(raw / "t10k-labels-idx1-ubyte", splits.test_y[:500].numpy())
    args = [
        "experiment=classifier_mnist100",
        "data=kmnist",
        "trainer=debug",
        "data.download=false",
        "data.val_size=500",
    ]
    proc = run(tree, args, tmp_path / "run", tmp_path / "data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = read_scalars(tmp_path / "run" / "tb")
    assert {"val/err_ema", "test/err_ema"} <= set(scalars)
    indices = json.loads((tmp_path / "run" / "labeled_indices.json").read_text())
    assert (indices["dataset"], indices["n_labeled"], indices["val_size"]) == ("KMNIST", 100, 500)


def _printed_override(key: str) -> str:
    """The page's command-line override that adds ``key`` (as printed, without the shell's quotes)."""
    return re.search(rf"'(\+{re.escape(key)}=[^']*)'", (ROOT / "docs" / "extending.md").read_text()).group(1)


def test_the_new_metric_is_logged_in_training(tree, tmp_path):
    reference = ROOT / "gan_lightning" / "references" / "MNIST.pt"
    metrics = [
        f"paths.reference_dir={reference.parent}",  # the shipped MNIST reference network
        "callbacks.generator_metrics.required=true",
        "callbacks.generator_metrics.n_samples=500",
        "callbacks.generator_metrics.n_real=1000",
        "callbacks.generator_metrics.per_class=false",
        "+callbacks.generator_metrics.prdc_samples=0",
    ]
    extra = _printed_override("callbacks.generator_metrics.extra.diversity")
    proc = run(tree, ["model=gan", "trainer=debug", *metrics, extra], tmp_path / "train", DATA_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    scalars = read_scalars(tmp_path / "train" / "tb")
    diversity = [value for _, _, value in scalars["gen/diversity"]]
    assert diversity
    assert all(0.0 < v < 2.0 for v in diversity)  # a ratio of mean distances
    assert "gen/fid" in scalars  # beside the built-in metrics
