"""EMA copies of a network (C's, and optionally G's): the averaging with its warm-up, one update (also inside a CUDA
graph)."""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_with_warmup(decay: float) -> Callable:
    """``multi_avg_fn`` for ``AveragedModel``: exponential moving average whose decay grows as
    ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``. Without the warm-up the copy keeps the
    initial weights and BN statistics (running variance 1) for about ``1 / (1 - decay)`` steps and, with BN,
    classifies everything as one class long after the network itself has learnt. Integer buffers are copied."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        weight = 1.0 - torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay).to(averaged[0].dtype)
        torch._foreach_lerp_(averaged, current, [weight] * len(averaged))

    return update


def average_into(averaged: AveragedModel, current: nn.Module, bare: bool) -> None:
    """One update of the averaged copy ``averaged`` towards ``current``. With ``bare`` (inside a CUDA graph) the
    averaging function is applied directly: ``AveragedModel.update_parameters`` reads its counter back to the host;
    the copy has been initialised by an earlier update."""
    if not (bare and getattr(averaged, "started", False)):
        averaged.update_parameters(current)
        averaged.started = True
        return
    copies = [*averaged.module.parameters(), *averaged.module.buffers()]
    pairs = list(zip(copies, [*current.parameters(), *current.buffers()]))
    floats = [(a.detach(), c.detach()) for a, c in pairs if a.is_floating_point()]
    others = [(a, c) for a, c in pairs if not a.is_floating_point()]
    averaged.multi_avg_fn(*map(list, zip(*floats)), averaged.n_averaged)
    if others:
        torch._foreach_copy_(*map(list, zip(*others)))
    averaged.n_averaged += 1


def averaged_copy(module: nn.Module, decay: float) -> AveragedModel:
    """An EMA copy of ``module`` (parameters and buffers, ``ema_with_warmup``) that takes no gradients."""
    copy_ = AveragedModel(copy.deepcopy(module), multi_avg_fn=ema_with_warmup(decay), use_buffers=True)
    return copy_.requires_grad_(False)
