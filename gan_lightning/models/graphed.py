"""Mixin of the games whose iterations can be recorded as CUDA graphs (``trainer.cuda_graphs``).

A game defines ``iteration(batch, optimizers, graph)``: one training iteration with the given optimizers, run through
``graph`` (an ``acceleration.IterationGraph``) when one is given, returning its step scalars by logged name; and
``LOSS_NAMES`` ({network: its loss's logged name}). ``run_iteration`` then runs it the Lightning way (eager) or
recorded, and does what Lightning would have done around the raw optimizer steps of a recorded iteration."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch

from gan_lightning.acceleration import IterationGraph, make_capturable


class GraphedIterations:
    """``enable_cuda_graphs`` switches recording on; ``run_iteration`` runs one iteration either way.

    ``GRAPH_KINDS``: how many kinds of iteration the game alternates between (each recorded once and kept).
    ``CUDA_GRAPHS_AUTO``: whether ``trainer.cuda_graphs=auto`` records this game's iterations (games whose recorded
    iterations have been measured faster than eager ones on a GPU); ``true`` records any game's."""

    GRAPH_KINDS: ClassVar[int] = 1
    CUDA_GRAPHS_AUTO: ClassVar[bool] = False
    LOSS_NAMES: ClassVar[Mapping[str, str]] = {}
    iteration_graph: IterationGraph | None = None

    # members of the LightningModule (GameModule) this is mixed into
    device: torch.device
    bare_steps: bool
    optimizers: Any
    parameters: Any
    buffers: Any
    check_finite: Any
    logging_step: Any
    iteration: Any
    configure_optimizers: Any

    def enable_cuda_graphs(self, warmup: int = 3, guarded: bool = False) -> None:
        """On a CUDA device, record each kind of iteration as one CUDA graph after ``warmup`` eager iterations and
        replay it from then on (``trainer.cuda_graphs=true``). ``guarded`` (``auto``): a failed recording, or a first
        replay that differs from the eager step, turns recording off for the run with one line."""
        self.iteration_graph = IterationGraph(
            warmup, keep=self.GRAPH_KINDS, guard=self.iteration_state if guarded else None
        )

    def iteration_state(self) -> list[torch.Tensor]:
        """Every tensor an iteration changes: the game's parameters and buffers and its optimizers' states."""
        states = [
            t
            for o in self.optimizers()
            for per_param in o.optimizer.state.values()
            for t in per_param.values()
            if isinstance(t, torch.Tensor)
        ]
        return [*self.parameters(), *self.buffers(), *states]

    def stepped_optimizers(self) -> Sequence[int]:
        """The optimizers (indices into ``optimizers()``) this batch's iteration updates."""
        raise NotImplementedError

    def bare_optimizers(self) -> list[torch.optim.Optimizer]:
        """The game's optimizers as ``configure_optimizers`` builds them, without a trainer or schedulers (for a loop
        that calls ``iteration`` itself)."""
        configured = self.configure_optimizers()
        return list(configured[0] if isinstance(configured, tuple) else configured)  # (optimizers, schedulers)

    def run_iteration(self, batch) -> dict[str, torch.Tensor]:
        """One iteration on ``batch`` and its step scalars. Eager: Lightning's optimizers. Recorded: the raw optimizers
        in their graph-safe form, then Lightning's step count advanced for the ones that stepped
        (``stepped_optimizers``), the losses checked, and on logging steps the scalars copied out of the graph (its
        next replay overwrites them)."""
        opts = self.optimizers()
        graph = self.iteration_graph if self.device.type == "cuda" else None
        if graph is None:
            return self.iteration(batch, opts)
        raw = [o.optimizer for o in opts]
        make_capturable(raw)
        self.bare_steps = True
        try:
            logs = self.iteration(batch, raw, graph)
        finally:
            self.bare_steps = False
        if graph.failed:  # guarded recording gave up (one line said why): eager iterations from the next batch on
            self.iteration_graph = None
        for i in self.stepped_optimizers():
            opts[i]._on_before_step()
            opts[i]._on_after_step()
        self.check_finite({net: logs[name] for net, name in self.LOSS_NAMES.items() if name in logs})
        if self.logging_step():
            logs = dict(zip(logs, torch.stack(list(logs.values())).unbind()))
        return logs
