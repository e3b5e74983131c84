"""Nothing is chosen by the test set: checkpoints, early stopping, sweeps and summaries choose by ``val/*`` only."""

from __future__ import annotations

import pytest
from conftest import CONF, compose_cfg, needs_mnist, run_cli
from omegaconf import OmegaConf

from gan_lightning.errors import ConfigError
from gan_lightning.models.base import GameModule
from gan_lightning.schema import configurable_classes
from gan_lightning.selection import check_selection, choices

CONFIGS = [
    [f"{group}={p.stem}"]
    for group in ("model", "experiment", "sweep", "task", "callbacks")
    for p in sorted((CONF / group).glob("*.yaml"))
]


@pytest.mark.parametrize("overrides", CONFIGS, ids=lambda o: o[0])
def test_no_config_in_conf_chooses_by_the_test_set(overrides):
    cfg = OmegaConf.to_container(compose_cfg(overrides), resolve=False)
    found = dict(choices(cfg))
    assert not [k for k, metric in found.items() if str(metric).startswith("test/")]
    check_selection({k: v for k, v in found.items() if "${" not in str(v)}, has_validation=True)
    metrics = (cfg.get("task") or {}).get("metrics")
    if metrics:  # task=summary ranks by its first metric
        assert str(metrics[0]).startswith("val/")


def test_every_game_monitors_a_validation_metric():
    games = [c for c in configurable_classes().values() if issubclass(c, GameModule)]
    assert games
    for game in games:
        assert game.MONITOR is None or game.MONITOR.startswith("val/"), game


def test_choices_are_found_at_any_depth_and_checked():
    cfg = {"monitor": "val/err_ema", "callbacks": {"early_stop": {"monitor": "test/err_ema"}}, "optimized_metric": None}
    assert dict(choices(cfg)) == {"monitor": "val/err_ema", "callbacks.early_stop.monitor": "test/err_ema"}
    with pytest.raises(
        ConfigError, match=r"callbacks.early_stop.monitor=test/err_ema: nothing is chosen by the test set"
    ):
        check_selection(cfg, has_validation=True)
    with pytest.raises(ConfigError, match=r"monitor=val/err_ema: this run has no validation set \(data.val_size=0\)"):
        check_selection({"monitor": "val/err_ema"}, has_validation=False)
    check_selection({"monitor": "gen/fid"}, has_validation=False)  # a generator metric needs no validation set


@needs_mnist
@pytest.mark.slow
@pytest.mark.parametrize(
    "args,message",
    [
        (["monitor=test/err_ema"], "error: monitor=test/err_ema: nothing is chosen by the test set"),
        (["optimized_metric=test/err_ema"], "error: optimized_metric=test/err_ema: nothing is chosen by the test set"),
        (
            ["data.val_size=0", "optimized_metric=val/best_err_ema"],
            "error: optimized_metric=val/best_err_ema: this run has no validation set",
        ),
    ],
)
def test_a_run_choosing_by_the_test_set_stops_before_training(args, message, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["model=classifier", "trainer=debug", "callbacks.progress_bar=null", *args], run_dir)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr, proc.stderr[-2000:]
    assert not (run_dir / "checkpoints").exists()
