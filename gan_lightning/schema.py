"""Config schemas made from the constructors: each default is written once, in the signature of its class.

For every network, game and datamodule of the package, ``register()`` puts a config node into Hydra's ConfigStore,
group ``schema``, named after the class: its ``_target_`` and one key per constructor argument with the
signature's default (``???`` where the argument has none; a subclass's ``**kwargs`` are followed into its
bases). A YAML file of ``conf/`` starts from the schema of the class it configures and writes only what differs::

    defaults:
      - /schema@_here_: TripleGAN          # the node itself (conf/model/triple_gan.yaml)
      - /schema@generator: MLPGenerator    # a nested network (conf/model/gan.yaml)
      - _self_

so ``python -m gan_lightning model.samples.seed=3`` works for every argument, ``--cfg job`` lists every setting with its
value, and changing a default in the code changes it everywhere. Types and ranges stay with the classes:
``config_check`` checks the composed values against the annotations, then the
constructors check the ranges, each with one line. A config that swaps a network for another class replaces its
schema too (``- override /schema@discriminator: MaxoutDiscriminator``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Mapping
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from gan_lightning.config_check import arguments_of
from gan_lightning.safe_build import allowed_targets

PRIMITIVES = (type(None), bool, int, float, str)


def _plain(value: Any) -> bool:
    if isinstance(value, PRIMITIVES):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return all(isinstance(k, str) and _plain(v) for k, v in value.items())
    return False


def _copy(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_copy(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _copy(v) for k, v in value.items()}
    return value


def defaults_of(cls: type) -> dict[str, Any]:
    """Each constructor argument of ``cls`` with its default (``MISSING`` where it has none). Arguments whose
    default is an object a config cannot hold are left out (a config then names them with ``+``)."""
    params, _, _ = arguments_of(cls)
    out: dict[str, Any] = {}
    for name, p in params.items():
        if name in ("self", "args", "kwargs"):
            continue
        if p.default is inspect.Parameter.empty:
            out[name] = MISSING
        elif _plain(p.default):
            out[name] = _copy(p.default)
    return out


def schema_of(cls: type) -> dict[str, Any]:
    """The config node of ``cls``: its ``_target_`` and each argument with its default (see ``defaults_of``). A plain
    node, not a dataclass: a config may still delete or replace a key (``~model.additions.augment``), and the types are
    checked against the annotations by ``config_check`` with the project's one-line errors."""
    return {"_target_": f"{cls.__module__}.{cls.__name__}", **defaults_of(cls)}


def configurable_classes() -> dict[str, type]:
    """The classes ``conf/`` may start from, by name: the package's own networks, games, blocks and datamodules
    (those a stored config may name, ``safe_build.allowed_targets``)."""
    found: dict[str, type] = {}
    for target in sorted(allowed_targets()):
        if not target.startswith("gan_lightning."):
            continue
        module_name, _, name = target.rpartition(".")
        cls = getattr(importlib.import_module(module_name), name)
        if not cls.__module__.startswith("gan_lightning."):
            continue  # a library's class imported into one of the package's modules
        if found.setdefault(name, cls) is not cls:
            raise RuntimeError(
                f"two configurable classes are named {name}: {found[name].__module__} and {cls.__module__}"
            )
    return found


@functools.cache
def register() -> None:
    """Put the schema of every configurable class into Hydra's ConfigStore (once per process)."""
    store = ConfigStore.instance()
    for name, cls in configurable_classes().items():
        store.store(group="schema", name=name, node=schema_of(cls))
