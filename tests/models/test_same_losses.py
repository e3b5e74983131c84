"""A fixed seed gives every game the losses it gave when ``tests/same_losses.json`` was written: each logged step
scalar of a few iterations of every game (Triple-GAN through pre-training, the warm-up, R_P and C's optimizer restart)
and the parameters' sums at the end. A change to how the code is organised keeps these numbers; a change that means
to alter them rewrites the file and says why in its commit:

    GAN_LIGHTNING_RECORD_LOSSES=1 python -m pytest tests/models/test_same_losses.py

The runs are the CLI's own build (``tasks.train.build``) on real MNIST, float32 on the CPU, one thread; the
tolerance covers a CPU that sums in another order (other vector units), not a changed computation."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import lightning as L
import pytest
import torch
from conftest import compose_cfg, needs_mnist

from bench.mnist100 import RUNS as MNIST100_RUNS

GOLDEN = Path(__file__).with_name("same_losses.json")
COMMON = ["trainer=debug", "trainer.limit_val_batches=0", "logger=none", "callbacks=none", "seed=3"]
TRIPLE_SMALL = [
    "model.generator_batch=20",
    "model.batch_sizes.c_labeled=20",
    "model.batch_sizes.c_unlabeled=20",
    "model.batch_sizes.d_labeled=2",
    "model.batch_sizes.d_unlabeled=20",
    "model.pretrain_batch_sizes.c_labeled=20",
    "model.pretrain_batch_sizes.c_unlabeled=20",
    "model.schedule.trigger_samples=100",
]
PRESET_SMALL = [  # a few iterations of the fast preset, its phases by epochs
    "trainer=debug",
    "~callbacks.generator_metrics",  # the preset's setting of a callback that callbacks=none leaves out
    *TRIPLE_SMALL,
    "model.schedule.pretrain_epochs=1",
    "model.schedule.pretrain_time_share=null",
    "model.schedule.pseudo_label_trigger=null",
    "model.schedule.pseudo_label_epoch=2",
    "model.schedule.lr_anneal_epoch=1",
    "model.objective=integrate",
    "model.epochs=2",
    "trainer.max_time=null",
    "trainer.limit_train_batches=3",
    "trainer.max_epochs=3",  # one of pre-training, two of the game
]
RUNS = {
    "gan_2_to_1": ["model=gan", "model.d_steps=2", "trainer.max_epochs=1"],
    "dcgan": ["model=dcgan", "trainer.max_epochs=1"],
    "cdcgan": ["model=cdcgan", "trainer.max_epochs=1"],
    "maxout_gan": ["experiment=maxout_gan_mnist", "trainer=debug", "trainer.max_epochs=1", "trainer.max_time=null"],
    "classifier": ["experiment=classifier_mnist100", "trainer=debug", "trainer.max_epochs=1"],
    # the official game: one epoch of pre-training, R_P from the second game epoch (C's Adam restarted there),
    # the adversarial warm-up over two game epochs
    "triple_gan": [
        "model=triple_gan",
        *TRIPLE_SMALL,
        "model.schedule.pretrain_epochs=1",
        "model.epochs=2",
        "model.schedule.pseudo_label_epoch=2",
        "model.schedule.adv_warmup_epochs=2",
        "trainer.limit_train_batches=3",
        "trainer.max_epochs=3",  # one of pre-training, two of the game
    ],
    # the preset's additions (augmentation with cutout, a teacher view without it, consistency, confident labels),
    # G's EMA copy, its schedule by epochs instead of time, and the integrating objective
    "triple_gan_preset": ["experiment=triple_gan_mnist100_fast", *PRESET_SMALL],
    # the preset as it was before cutout (one affine view for C's student and teacher, no EMA copy of G)
    "triple_gan_preset_affine": [*MNIST100_RUNS["triple_gan_fast_affine"], *PRESET_SMALL],
}


class StepScalars(L.Callback):
    """Every step scalar the game logs, after each batch."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        self.steps.append(
            {k: float(v) for k, v in sorted(trainer.callback_metrics.items()) if k.startswith(("train/", "pretrain/"))}
        )


def record(name: str, tmp: Path, extra: tuple[str, ...] = ()) -> dict:
    from gan_lightning.tasks.train import build

    torch.set_num_threads(1)
    cfg = compose_cfg([*RUNS[name], *COMMON, "trainer.precision=32-true", *extra], tmp)
    datamodule, model, trainer = build(cfg)
    scalars = StepScalars()
    trainer.callbacks.append(scalars)
    trainer.fit(model, datamodule=datamodule)
    sums = {
        net: float(sum(p.detach().double().sum() for p in getattr(model, net).parameters()))
        for net in ("generator", "discriminator", "classifier", "g_ema")
        if getattr(model, net, None) is not None
    }
    return {"steps": scalars.steps, "parameter_sums": sums}


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_fixed_seed_gives_the_recorded_losses(name, tmp_path):
    got = record(name, tmp_path)
    if os.environ.get("GAN_LIGHTNING_RECORD_LOSSES"):  # rewrite this run's values (one process: no -n)
        data = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
        GOLDEN.write_text(json.dumps({**data, name: got}, indent=1, sort_keys=True) + "\n")
        pytest.skip(f"recorded {len(got['steps'])} steps of {name}")
    expected = json.loads(GOLDEN.read_text())[name]
    assert [sorted(s) for s in got["steps"]] == [sorted(s) for s in expected["steps"]]  # the same scalars each step
    for i, (g, e) in enumerate(zip(got["steps"], expected["steps"])):
        for key in e:
            assert math.isclose(g[key], e[key], rel_tol=2e-4, abs_tol=1e-5), (name, i, key, g[key], e[key])
    for net, value in expected["parameter_sums"].items():
        assert math.isclose(got["parameter_sums"][net], value, rel_tol=1e-4, abs_tol=1e-3), (name, net)


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize("name", ["triple_gan_preset_affine"])  # a GAN's: tests/models/test_games.py
def test_an_ema_copy_of_g_changes_no_loss(name, tmp_path):
    """G's EMA copy renders; the game trains exactly as without it (no random draw, no gradient of its own)."""
    got = record(name, tmp_path, ("model.samples.g_ema_decay=0.9",))
    expected = json.loads(GOLDEN.read_text())[name]
    for i, (g, e) in enumerate(zip(got["steps"], expected["steps"], strict=True)):
        for key in e:
            assert math.isclose(g[key], e[key], rel_tol=2e-4, abs_tol=1e-5), (name, i, key, g[key], e[key])
    sums = got["parameter_sums"]
    assert math.isclose(sums["generator"], expected["parameter_sums"]["generator"], rel_tol=1e-4, abs_tol=1e-3)
    assert not math.isclose(sums["g_ema"], sums["generator"], rel_tol=1e-6)  # the average lags G
