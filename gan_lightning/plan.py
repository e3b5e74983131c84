"""What a game draws from the data: its streams, what one epoch is and its phases.

A game class names the streams its ``training_step`` reads and where each comes from (``STREAMS``: name -> source,
``train`` or ``labeled``); its config gives their batch sizes (``model.batch_sizes``). The datamodule serves the
plan (``ImageDataModule.serve``) and checks it can. Every mismatch is one line before anything trains, instead of
a ``KeyError`` at the first step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gan_lightning.errors import ConfigError

if TYPE_CHECKING:
    from gan_lightning.capabilities import Phases

SOURCES = ("train", "labeled")


@dataclass(frozen=True)
class Phase:
    """The batch of one iteration, ``{stream: {"source": ..., "batch_size": ...}}``, and the length of an epoch: a
    number of iterations or the name of the stream whose pass over its source makes one."""

    streams: dict[str, dict[str, Any]]
    epoch_length: int | str


@dataclass(frozen=True)
class DataPlan:
    """A game's phases (``pretrain``: C's pre-training, when the game has one, and its schedule ``phases`` that says
    which epochs it takes) and whether it validates (a game with a classifier: the datamodule then holds out
    ``data.val_size`` training images). A game that reads the ``labeled`` source learns from ``data.n_labeled``
    labeled images; one that does not, from the training images (with all their labels, for a conditional game)."""

    game: Phase
    pretrain: Phase | None = None
    validates: bool = False
    phases: Phases | None = None  # which epochs are pre-training (the game's schedule), when it has a pre-training

    def phase(self, pretraining: bool) -> Phase:
        return self.pretrain if pretraining and self.pretrain is not None else self.game

    @property
    def reads_labeled(self) -> bool:
        """Whether any of its streams draws from the labeled subset (a semi-supervised or supervised game)."""
        return any(
            spec["source"] == "labeled"
            for phase in (self.game, self.pretrain)
            if phase
            for spec in phase.streams.values()
        )


def declare(
    sources: Mapping[str, str], batch_sizes: Mapping[str, Any] | None, epoch_length: int | str, key: str
) -> Phase:
    """Check the configured batch sizes against the streams a game reads; ``key`` names the setting in errors."""
    sizes = dict(batch_sizes or {})
    unknown = sorted(set(sizes) - set(sources))
    if unknown:
        raise ConfigError(f"{key}.{unknown[0]}: this game has no such stream; its streams are {sorted(sources)}")
    missing = [name for name in sources if name not in sizes]
    if missing:
        raise ConfigError(f"{key} has no batch size for {missing}; this game reads {list(sources)} every iteration")
    for name, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
            raise ConfigError(f"{key}.{name}={size!r}: expects a positive integer")
    if isinstance(epoch_length, bool) or not (
        (isinstance(epoch_length, int) and epoch_length > 0) or epoch_length in sources
    ):
        raise ConfigError(
            f"model.epoch_length={epoch_length!r}: expects a positive number of iterations "
            f"or a stream ({sorted(sources)})"
        )
    return Phase({name: {"source": sources[name], "batch_size": sizes[name]} for name in sources}, epoch_length)
