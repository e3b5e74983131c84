"""Build networks and games from configs found in files (checkpoints, reference networks) without running code.

A config stored in a file names the callables Hydra will call (``_target_``). Such a file comes from anyone, so
before anything is imported or called, every ``_target_`` anywhere in it (nested arguments, ``_args_`` lists
included) is checked against what this framework's own configs can construct:

- the networks, games, blocks and datamodules defined in ``gan_lightning.nets``, ``gan_lightning.models`` and
  ``gan_lightning.data``;
- the layers of ``torch.nn`` (e.g. ``torch.nn.Sequential``), the optimizers of ``torch.optim`` and the schedulers
  of ``torch.optim.lr_scheduler``.

Anything else, a value that is not a plain string, or an unresolved ``${...}`` interpolation stops with one line
(``ConfigError``) saying what the file asked for; nothing of it has been imported or called by then.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from torch import nn

from gan_lightning.config_check import Settings
from gan_lightning.errors import ConfigError

_OWN_PACKAGES = ("gan_lightning.nets", "gan_lightning.models", "gan_lightning.data")


def _public_classes(module, base: type | tuple[type, ...]) -> Iterator[str]:
    for name, obj in vars(module).items():
        if not name.startswith("_") and inspect.isclass(obj) and issubclass(obj, base):
            yield f"{module.__name__}.{name}"


@functools.cache
def allowed_targets() -> frozenset[str]:
    """Every ``_target_`` a stored config may name (dotted paths, as they are written in configs)."""
    allowed: set[str] = set()
    own_bases = (nn.Module, L.LightningDataModule, Settings)
    for package_name in _OWN_PACKAGES:
        package = importlib.import_module(package_name)
        allowed.update(_public_classes(package, own_bases))
        for info in pkgutil.iter_modules(package.__path__, package_name + "."):
            allowed.update(_public_classes(importlib.import_module(info.name), own_bases))
    allowed.update(n for n in _public_classes(torch.nn, nn.Module) if n.count(".") == 2)
    allowed.update(_public_classes(torch.optim, torch.optim.Optimizer))
    allowed.update(_public_classes(torch.optim.lr_scheduler, torch.optim.lr_scheduler.LRScheduler))
    return frozenset(allowed)


def _walk(node: Any, where: str) -> Iterator[tuple[str, Any]]:
    """(dotted location, value) of every ``_target_`` in a nested dict/list, and of every string."""
    if isinstance(node, dict):
        for key, value in node.items():
            if not isinstance(key, str):
                raise ConfigError(
                    f"{where}: has a key of type {type(key).__name__}; stored configs have string keys only"
                )
            loc = f"{where}.{key}"
            if key == "_target_":
                yield loc, value
            else:
                yield from _walk(value, loc)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from _walk(value, f"{where}[{i}]")
    elif isinstance(node, str):
        yield where, node
    elif node is not None and not isinstance(node, (bool, int, float)):
        raise ConfigError(f"{where}: holds a {type(node).__name__}; stored configs hold plain values only")


def check_stored_config(config: Any, source: str, root: str = "config") -> None:
    """Raise a one-line ConfigError if ``config`` (read from the file ``source``) names anything this framework's
    configs do not build, or holds an interpolation; imports and calls nothing."""
    allowed = allowed_targets()
    for loc, value in _walk(config, root):
        is_target = loc.endswith("._target_")
        if is_target and not isinstance(value, str):
            raise ConfigError(
                f"{source}: {loc} is a {type(value).__name__}, not a class name; refused (nothing was built)"
            )
        if isinstance(value, str) and "${" in value:
            raise ConfigError(
                f"{source}: {loc}={value[:80]!r} is an interpolation; stored configs must be resolved "
                "(nothing was built)"
            )
        if is_target and value not in allowed:
            raise ConfigError(
                f"{source}: {loc} asks for {value[:120]!r}, which is not a gan_lightning network, game, "
                "datamodule, torch.nn layer or torch optimizer; refused (nothing was built)"
            )


def build_stored(config: dict, source: str, root: str = "config") -> Any:
    """``hydra.utils.instantiate(config)`` after ``check_stored_config``: the only way configs read from files are built
    (``root`` names the config in messages: model, data, network)."""
    check_stored_config(config, source, root)
    return instantiate(config, _convert_="all")
