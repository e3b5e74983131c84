"""What the tasks, callbacks and datamodules may ask of a game or a network, as types.

A game states its capabilities by having these members; ``isinstance(model, CanGenerate)`` asks the question in
one named place instead of scattered ``hasattr`` checks (``runtime_checkable`` protocols check the members' presence).
"""

from __future__ import annotations

import inspect
from collections.abc import Hashable
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from gan_lightning.errors import ConfigError


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


class Phases(Protocol):
    """A schedule of phases (e.g. ``models.schedule.Schedule``): which Lightning epochs are pre-training. The
    datamodule serves an epoch the streams of its phase; the progress callbacks tell the phases apart."""

    pretrain_end: int
    pretrain_time_share: float | None

    def in_pretraining(self, epoch: int) -> bool: ...


@runtime_checkable
class HasPhases(Protocol):
    """A game whose epochs belong to phases: its ``schedule`` (``Phases``), also in its data plan."""

    schedule: Phases


def in_pretraining(model: object, epoch: int) -> bool:
    """Whether Lightning epoch ``epoch`` of ``model`` belongs to a pre-training, in which its generator is not trained
    (False for a game without phases)."""
    return isinstance(model, HasPhases) and model.schedule.in_pretraining(epoch)


@runtime_checkable
class RecordsCudaGraphs(Protocol):
    """A game whose iterations can be recorded as CUDA graphs (``trainer.cuda_graphs``, ``acceleration``):
    ``iteration(batch, opt, kind)`` runs one training iteration with the optimizers ``opt`` (by name) and returns its
    step scalars; ``iteration_kind(opt)`` takes the host-side decisions for this batch and names its kind (one record
    per kind, ``GRAPH_KINDS`` kept at a time).
    ``CUDA_GRAPHS_AUTO``: whether ``trainer.cuda_graphs=auto`` records it (where measured faster than eager)."""

    CUDA_GRAPHS_AUTO: bool
    GRAPH_KINDS: int

    def iteration(self, batch: Any, opt: Any, kind: Hashable | None = None) -> dict[str, torch.Tensor]: ...

    def iteration_kind(self, opt: Any) -> Hashable: ...


# a game claims a capability by its defining member; the feature that needs it (image grids and generator metrics,
# classifier evaluation, phases, CUDA graphs) then needs every member of the protocol
CLAIMS: dict[type, tuple[str, str]] = {
    CanGenerate: ("generate", "image grids, FID/KID/IS and task=sample"),
    HasClassifier: ("classifier", "the validation and test errors and task=analyze"),
    HasPhases: ("schedule", "its phases' data streams"),
    RecordsCudaGraphs: ("iteration_kind", "trainer.cuda_graphs"),
}


def _members(protocol: type) -> list[str]:
    names: list[str] = []
    for base in protocol.__mro__:
        if base in (Protocol, object) or not getattr(base, "_is_protocol", False):
            continue
        names += [
            n for n in (*inspect.get_annotations(base), *base.__dict__) if not n.startswith("_") and n not in names
        ]
    return names


def check_capabilities(component: object, what: str = "model") -> None:
    """One line when ``component`` claims a capability (has its defining member) without every member the features
    using it read, instead of those features switching themselves off (e.g. a generator without ``latent_dim``)."""
    for protocol, (claim, feature) in CLAIMS.items():
        if not hasattr(component, claim):
            continue
        missing = [n for n in _members(protocol) if not hasattr(component, n)]
        if missing:
            raise ConfigError(
                f"{what}: {type(component).__name__} has {claim} but no {', '.join(missing)}; "
                f"{feature} need {protocol.__name__}'s members: {', '.join(_members(protocol))}"
            )
