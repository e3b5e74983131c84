"""What the tasks, callbacks and datamodules may ask of a game or a network, as types.

A game states its capabilities by having these members; ``isinstance(model, CanGenerate)`` asks the question in
one named place instead of scattered ``hasattr`` checks (``runtime_checkable`` protocols check the members' presence).
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class CanGenerate(Protocol):
    """A game with a generator: ``generate(z, y) -> images in [0, 1]`` (``y``: class indices or class weights, None for
    unconditional games), latent codes from ``sample_z``; ``sample_images`` gives the fixed-noise grid."""

    latent_dim: int
    num_classes: int

    @property
    def is_conditional(self) -> bool: ...

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor: ...

    def sample_z(self, n: int, dim: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor: ...

    def sample_images(self) -> tuple[torch.Tensor, int]: ...

    def to(self, *args: Any, **kwargs: Any) -> Any: ...


@runtime_checkable
class HasClassifier(Protocol):
    """A game with a classifier ``classifier(x) -> logits`` (inputs in the game's data range) and its EMA copy."""

    classifier: nn.Module
    ema: nn.Module
    data_range: str


@runtime_checkable
class Embeds(Protocol):
    """A network with penultimate features ``embed(x)`` and a linear ``head`` on them (reference networks)."""

    head: nn.Linear

    def embed(self, x: torch.Tensor) -> torch.Tensor: ...

    def eval(self) -> Any: ...


@runtime_checkable
class HasPhases(Protocol):
    """A game whose epochs belong to phases (e.g. C's pre-training): the datamodule asks which streams an epoch uses."""

    def in_pretraining(self, epoch: int) -> bool: ...


@runtime_checkable
class RecordsCudaGraphs(Protocol):
    """A game that can record its iterations as CUDA graphs (``trainer.cuda_graphs``); ``CUDA_GRAPHS_AUTO``: whether
    ``trainer.cuda_graphs=auto`` does."""

    CUDA_GRAPHS_AUTO: bool

    def enable_cuda_graphs(self, warmup: int = 3) -> None: ...
