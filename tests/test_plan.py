"""A game declares what it draws from the data (streams, epoch, phases, labels); the datamodule serves it; every
mismatch is one line before training."""

from __future__ import annotations

import pytest
from conftest import CONF, DATA_ROOT, compose_cfg, needs_mnist, run_cli
from hydra.errors import InstantiationException
from hydra.utils import instantiate

from gan_lightning.data import MNISTDataModule
from gan_lightning.errors import ConfigError
from gan_lightning.plan import DataPlan, Phase

MODELS = sorted(p.stem for p in (CONF / "model").glob("*.yaml"))


@pytest.mark.parametrize("name", MODELS)
def test_each_model_config_gives_a_size_to_every_stream_its_game_reads(name):
    model = instantiate(compose_cfg([f"model={name}"]).model)
    assert set(model.plan.game.streams) == set(type(model).STREAMS)
    assert all(spec["source"] == type(model).STREAMS[k] for k, spec in model.plan.game.streams.items())


@pytest.mark.parametrize(
    "override,message",
    [
        (
            "+model.batch_sizes.images=64",
            r"model.batch_sizes.images: this game has no such stream; its streams are \['real'\]",
        ),
        ("model.batch_sizes.real=0", r"model.batch_sizes.real=0: expects a positive integer"),
        ("~model.batch_sizes.real", r"model.batch_sizes has no batch size for \['real'\]"),
        (
            "model.epoch_length=fakes",
            r"model.epoch_length='fakes': expects a positive number of iterations or a stream",
        ),
    ],
)
def test_batch_sizes_that_do_not_fit_the_game_are_refused(override, message):
    with pytest.raises(InstantiationException, match=message) as err:  # Hydra wraps the game's ConfigError
        instantiate(compose_cfg(["model=gan", override]).model)
    assert isinstance(err.value.__cause__, ConfigError)


def test_triple_gan_declares_its_pretraining_phase_and_labels():
    model = instantiate(compose_cfg(["model=triple_gan", "model.pretrain_batch_sizes.c_unlabeled=50"]).model)
    assert model.plan.reads_labeled
    assert not instantiate(compose_cfg(["model=cgan"]).model).plan.reads_labeled  # all labels, no labeled subset
    assert {k: v["batch_size"] for k, v in model.plan.phase(pretraining=True).streams.items()} == {
        "c_labeled": 100,
        "c_unlabeled": 50,
    }
    assert model.plan.phase(pretraining=False) is model.plan.game
    assert len(model.plan.game.streams) == 4
    with pytest.raises(
        InstantiationException, match=r"model.pretrain_batch_sizes.d_unlabeled: this game has no such stream"
    ):
        instantiate(compose_cfg(["model=triple_gan", "+model.pretrain_batch_sizes.d_unlabeled=5"]).model)


@needs_mnist
def test_the_datamodule_serves_the_games_plan_per_phase():
    model = instantiate(compose_cfg(["model=triple_gan", "model.batch_sizes.d_unlabeled=40"]).model)
    dm = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, download=False)
    dm.serve(model)
    dm.setup()
    assert dm.n_labeled == 100
    assert len(dm.labeled_set[0]) == 100
    batch = next(iter(dm.train_dataloader()))  # epoch 0: the game's schedule says C's pre-training
    assert {k: len(v[0]) for k, v in batch.items()} == {"c_labeled": 100, "c_unlabeled": 500}
    model.schedule.pretrain_end = 0  # as when pre-training has ended (the schedule is the one the datamodule reads)
    batch = next(iter(dm.train_dataloader()))
    assert {k: len(v[0]) for k, v in batch.items()} == {
        "c_labeled": 100,
        "c_unlabeled": 100,
        "d_labeled": 1,
        "d_unlabeled": 40,
    }
    # 55,000 / 100 and / 500: the 5,000 validation images are in no training stream
    assert dm.iterations_per_epoch() == 550
    assert dm.iterations_per_epoch(pretraining=True) == 110
    assert len(dm.val_set[0]) == 5000
    assert dm.eval_sets == ("val", "test")
    # another game, reading no labeled examples: every training image, with its label; 7 iterations an epoch
    dm.serve(DataPlan(Phase({"x": {"source": "train", "batch_size": 10}}, 7)))
    dm.setup()
    assert dm.n_labeled is None
    assert len(dm.labeled_set[0]) == 60000
    assert dm.iterations_per_epoch() == 7


@pytest.mark.slow
@needs_mnist
def test_a_renamed_stream_on_the_command_line_is_one_line_before_training(tmp_path):
    proc = run_cli(["model=gan", "+model.batch_sizes.images=64", "trainer=debug"], tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert (
        proc.stderr.strip() == "error: model.batch_sizes.images: this game has no such stream; its streams are ['real']"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
