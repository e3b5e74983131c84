"""Keys that moved: a command line or config naming one stops with one line saying where it lives now, and the configs
stored in older checkpoints are read with their keys in the new places, building the same game."""

from __future__ import annotations

import pytest
from conftest import compose_cfg, run_cli
from omegaconf import OmegaConf

from gan_lightning.moved import MODEL_KEYS, hint, upgrade
from gan_lightning.safe_build import build_stored


@pytest.mark.parametrize(
    "override,said",
    [
        ("model.pretrain_epochs=3", "moved to model.schedule.pretrain_epochs"),
        ("model.optimizer_c.lr=1e-3", "moved to model.optimizers.c.lr"),
        ("model.reuse_forwards=true", "moved to model.fidelity.reuse_forwards"),
        ("+model.augment={_target_:torch.nn.Identity}", "moved to model.additions.augment"),
        ("model.n_labeled=50", "moved to data.n_labeled (the labeled split is the data's, beside data.label_seed)"),
        ("model.grid_seed=3", "moved to model.samples.seed"),
        ("model.g_ema_decay=0.999", "moved to model.samples.g_ema_decay"),
    ],
)
def test_an_old_key_on_the_command_line_says_where_it_moved(override, said, tmp_path):
    assert hint(override) == said
    proc = run_cli(["model=triple_gan", override], tmp_path / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: {override.lstrip('+~').split('=', 1)[0]}: {said}"


def test_keys_that_did_not_move_have_no_hint():
    assert hint("model.schedule.pretrain_epochs=3") is None
    assert hint("model.alpha=0.3") is None
    assert hint("model.optimizer.lr=1e-3") is None  # a classifier's one optimizer keeps its key


def _flattened(model_cfg: dict) -> dict:
    """A current model config written with the keys of older releases."""
    old = dict(model_cfg)
    for key, new in MODEL_KEYS.items():
        group, name = new.split(".")
        if isinstance(old.get(group), dict) and name in old[group]:
            old[key] = old[group][name]
    for group in ("schedule", "fidelity", "additions", "optimizers", "samples"):
        old.pop(group, None)
    return old


def test_an_older_checkpoints_config_builds_the_same_game():
    cfg = OmegaConf.to_container(compose_cfg(["experiment=triple_gan_mnist100_fast"]), resolve=True)
    data = {k: v for k, v in cfg["data"].items() if k != "n_labeled"}
    older = {**cfg, "model": {**_flattened(cfg["model"]), "n_labeled": 50}, "data": data}
    assert "pretrain_epochs" in older["model"]
    assert "schedule" not in older["model"]
    upgraded = upgrade(older)
    assert upgraded["model"] == cfg["model"]
    assert upgraded["data"] == {**cfg["data"], "n_labeled": 50}  # the labeled split moved to the data
    assert older["model"]["pretrain_epochs"] == 30  # the stored config itself is left as it was
    game = build_stored(upgraded["model"], "checkpoint", "model")
    assert game.schedule.pretrain_time_share == 0.4
    assert game.additions.augment is not None
    assert game.samples.seed == 0  # the grid's keys moved into model.samples
    assert game.grid_nrow == 10
    assert upgrade(cfg) is cfg  # a current config is taken as it is
