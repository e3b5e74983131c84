"""What a run may choose by: the validation set (``val/*``), never the official test set (``test/*``).

Checkpoints' ``monitor``, early stopping, the value a sweeper optimises (``optimized_metric``) and ``task=summary``'s
ranking each choose something by a metric. ``check_selection`` refuses, with one line before training, a choice by
``test/*`` and a choice by ``val/*`` when the run has no validation set (``data.val_size=0``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gan_lightning.errors import ConfigError

SELECTING_KEYS = ("monitor", "optimized_metric")  # config keys whose value is a metric something is chosen by


def choices(node: Any, where: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(config key, metric)`` of a resolved config that chooses by a metric (at any depth)."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if key in SELECTING_KEYS and isinstance(value, str):
                yield path, value
            else:
                yield from choices(value, path)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from choices(item, f"{where}[{i}]")


def check_metric(key: str, metric: str, has_validation: bool = True) -> None:
    """One line when ``metric`` (given as ``key``) may not choose anything in a run with or without validation."""
    if metric.startswith("test/"):
        raise ConfigError(
            f"{key}={metric}: nothing is chosen by the test set; choose by a val/ metric (held-out "
            f"training images), e.g. {key}=val/{metric.removeprefix('test/')}"
        )
    if metric.startswith("val/") and not has_validation:
        raise ConfigError(
            f"{key}={metric}: this run has no validation set (data.val_size=0); give data.val_size > 0 "
            f"or choose by nothing ({key}=null)"
        )


def check_selection(cfg: dict, has_validation: bool) -> None:
    """Check every choice of a resolved run config (``monitor``, ``optimized_metric``, callbacks' monitors)."""
    for key, metric in choices(cfg):
        check_metric(key, metric, has_validation)
