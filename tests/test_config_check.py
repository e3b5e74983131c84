"""Fuzz the configuration: every numeric setting of every model and data config (what its YAML writes and the
defaults its classes' signatures add) set to 0, to a negative value and to a string, built as the CLI builds a run
(without training). Each case either builds or stops with one line
(``ConfigError``, exit status 2); a traceback fails the test. The number of cases is printed and asserted."""

from __future__ import annotations

import functools
import re

import pytest
from conftest import CONF, compose_cfg, needs_mnist
from omegaconf import OmegaConf

from gan_lightning.__main__ import _user_error
from gan_lightning.data import datamodule as datamodule_module
from gan_lightning.errors import ConfigError
from gan_lightning.tasks.train import build

pytestmark = [needs_mnist, pytest.mark.slow]


def _numeric_leaves(node, prefix="", owner=("", "")):
    """(dotted key, (class that reads it, key below that class's node)) of every int/float setting of a composed
    config node (interpolations and lists are skipped)."""
    if isinstance(node, dict):
        if isinstance(node.get("_target_"), str):
            owner = (node["_target_"], "")
        for key, value in node.items():
            below = f"{owner[1]}.{key}" if owner[1] else str(key)
            yield from _numeric_leaves(value, f"{prefix}.{key}" if prefix else str(key), (owner[0], below))
    elif isinstance(node, (int, float)) and not isinstance(node, bool):
        yield prefix, owner


def cases() -> list[tuple[str, str, str]]:
    """(group option, key, value) for every numeric setting of every model and data option as composed (the
    defaults its classes' signatures give included): each setting of each class once, under the first option
    (in name order) that has it."""
    out, seen = [], set()
    for group in ("model", "data"):
        for path in sorted((CONF / group).glob("*.yaml")):
            option = f"{group}={path.stem}"
            cfg = compose_cfg([option] if group == "model" else ["model=gan", option])
            node = OmegaConf.to_container(cfg[group], resolve=False)
            for key, owner in _numeric_leaves(node, group):
                if owner in seen:
                    continue
                seen.add(owner)
                for value in ("0", "-3", "abc"):
                    out.append((option, key, value))
    return out


CASES = cases()


@pytest.fixture(scope="module", autouse=True)
def _read_each_dataset_once():
    """The fuzz builds hundreds of runs: each dataset's files are read and checked once, not for every case."""
    original = datamodule_module.load_idx
    datamodule_module.load_idx = functools.lru_cache(maxsize=None)(original)
    yield
    datamodule_module.load_idx = original


def test_case_count_is_reported():
    print(f"config fuzz: {len(CASES)} cases")
    assert len(CASES) > 150


@pytest.mark.parametrize("option,key,value", CASES, ids=[f"{o}:{k}={v}" for o, k, v in CASES])
def test_every_bad_value_builds_or_is_one_line(option, key, value, tmp_path):
    overrides = [option] if option.startswith("model=") else ["model=gan", option]
    if option == "data=cifar10":
        pytest.skip("CIFAR-10 files are not on this machine; its settings are the same keys as MNIST's")
    err: Exception | None = None
    try:
        cfg = compose_cfg(
            [*overrides, f"{key}={value}", "trainer=debug", "logger=none", "callbacks=none"], output_dir=tmp_path
        )
        OmegaConf.resolve(cfg)
        build(cfg)
    except Exception as caught:  # noqa: BLE001 - classified below
        err = caught
    if err is not None:
        found = _user_error(err)
        assert isinstance(found, ConfigError), f"{key}={value}: {type(err).__name__}: {err}"
        assert "\n" not in str(found), str(found)


@pytest.mark.parametrize(
    "override,message",
    [
        ("model.alpha=1.5", "model.alpha=1.5 must be in [0, 1]"),
        ("model.objective=mean", "model.objective='mean' is not one of ['argmax', 'integrate']"),
        ("model.generator_batch=0", "model.generator_batch=0 must be >= 1"),
        ("model.schedule.pretrain_time_share=1", "model.schedule.pretrain_time_share=1 must be in [0, 1) or null"),
        ("model.fidelity.c_bn_update=some", "model.fidelity.c_bn_update='some' is not one of ['all', 'unlabeled']"),
        ("model.additions.align_momentum=1", "model.additions.align_momentum=1 must be in [0, 1)"),
    ],
)
def test_ranges_and_choices_written_in_annotations_are_checked_before_anything_is_built(override, message):
    """The config check reads the ranges (``Annotated[..., Range]``) and choices (``Literal``) of the constructors
    and of the settings' dataclasses; building the class from Python says the same (``check_arguments``)."""
    from hydra.utils import instantiate

    from gan_lightning.config_check import check_config

    cfg = compose_cfg(["model=triple_gan", override])
    with pytest.raises(ConfigError) as err:
        check_config(OmegaConf.to_container(cfg, resolve=True))
    assert str(err.value) == message
    with pytest.raises(Exception, match=re.escape(message)) as built:  # Hydra wraps the constructor's error
        instantiate(cfg.model, _convert_="all")
    assert str(_user_error(built.value)) == message
