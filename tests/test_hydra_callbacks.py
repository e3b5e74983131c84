"""Every run gets a directory of its own, also when several start in the same second; a half-implemented capability
stops the run when it is built."""

from __future__ import annotations

import os

import pytest
from conftest import compose_cfg, needs_mnist, run_cli
from hydra.utils import instantiate

from gan_lightning.capabilities import check_capabilities
from gan_lightning.errors import ConfigError
from gan_lightning.hydra_callbacks import claim_directory
from gan_lightning.models.gan import GAN
from gan_lightning.tasks.train import build


def test_claim_directory_gives_each_caller_its_own(tmp_path):
    base = tmp_path / "outputs" / "2026-01-01" / "12-00-00"
    got = [claim_directory(str(base)) for _ in range(3)]
    assert got == [str(base), f"{base}-2", f"{base}-3"]
    assert all(os.path.isdir(p) for p in got)


@pytest.mark.slow
def test_runs_resolving_the_same_directory_write_separate_ones(tmp_path):
    """Two CLI runs whose run directory resolves to the same path (as a shell loop over seeds does within one second):
    the second gets <dir>-2, and each keeps its own config."""
    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- seed=1\n")
    same = "${unique_dir:" + str(tmp_path / "outputs" / "same") + "}"  # what the default hydra.run.dir resolves through
    for seed in (1, 2):
        proc = run_cli(["task=summary", f"task.dir={sweep}", f"seed={seed}"], same)
        assert proc.returncode == 0, proc.stderr[-2000:]
    dirs = sorted(p.name for p in (tmp_path / "outputs").iterdir())
    assert dirs == ["same", "same-2"]
    seeds = [(tmp_path / "outputs" / d / ".hydra" / "overrides.yaml").read_text() for d in dirs]
    assert "seed=1" in seeds[0]
    assert "seed=2" in seeds[1]


class NoLatentGAN(GAN):
    """A generator game that forgot ``latent_dim``."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.latent_dim


def _gan(target: str = "gan_lightning.models.gan.GAN"):
    cfg = compose_cfg(["model=gan"])
    cfg.model._target_ = target
    return instantiate(cfg.model, _convert_="all")


def test_a_game_without_a_member_its_features_need_stops_when_built():
    check_capabilities(_gan())  # a complete game passes
    with pytest.raises(
        ConfigError, match=r"model: NoLatentGAN has generate but no latent_dim; image grids, FID/KID/IS"
    ):
        check_capabilities(_gan(f"{__name__}.NoLatentGAN"))


@needs_mnist
def test_the_run_is_refused_before_training(tmp_path):
    cfg = compose_cfg(["model=gan", "trainer=debug", "logger=none"], tmp_path)
    cfg.model._target_ = f"{__name__}.NoLatentGAN"
    with pytest.raises(ConfigError, match="has generate but no latent_dim"):
        build(cfg)
