"""Whole-iteration CUDA graphs: a game's iteration (every forward, backward, optimizer step and the EMA update)
is recorded once and replayed, so one iteration costs one launch instead of hundreds of small kernels.

The recorded function must not read values back to the host, must take its inputs from the given tensors, and
must keep its Python control flow fixed for a given ``key``; a new key (e.g. a loss term switched on at some
epoch) records a new graph. Random numbers drawn inside (latent codes, dropout, noise) follow the same stream as
eager execution, since PyTorch advances the CUDA generator's offset on each replay.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

import torch

Batch = Mapping[str, tuple[torch.Tensor, ...]]


def make_capturable(optimizers) -> None:
    """Switch optimizers to their graph-safe form: ``capturable`` steps, learning rates and step counts as
    device tensors (schedulers then change the learning rate in place, which a replayed graph sees)."""
    for opt in optimizers:
        if all(isinstance(group["lr"], torch.Tensor) for group in opt.param_groups):
            continue  # done already
        for group in opt.param_groups:
            device = group["params"][0].device
            if "capturable" in group:
                group["capturable"] = True
            if not isinstance(group["lr"], torch.Tensor):
                group["lr"] = torch.tensor(float(group["lr"]), device=device)
            for p in group["params"]:
                state = opt.state.get(p, {})
                if isinstance(state.get("step"), torch.Tensor) and state["step"].device != p.device:
                    state["step"] = state["step"].to(device=p.device, dtype=torch.float32)


class IterationGraph:
    """Runs ``fn(batch)`` eagerly for ``warmup`` calls (on a side stream, as graph capture requires), records
    it on the next call and replays the record from then on, with the batch copied into fixed input tensors.
    Returns ``fn``'s output tensors (the graph's own, overwritten by the next replay)."""

    def __init__(self, warmup: int = 3) -> None:
        if warmup < 1:
            raise ValueError("a CUDA graph needs at least one eager warm-up call before it is recorded")
        self.warmup = warmup
        self.key: Hashable | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.calls = 0
        self.captures = 0

    def reset(self) -> None:
        self.key, self.graph, self.calls = None, None, 0

    def __call__(self, key: Hashable, fn: Callable[[Batch], dict], batch: Batch) -> dict:
        if key != self.key:
            self.reset()
            self.key = key
        self.calls += 1
        if self.calls <= self.warmup:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = fn(batch)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.graph is None:
            self.inputs = {name: tuple(t.clone() for t in tensors) for name, tensors in batch.items()}
            self.graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self.graph):
                self.outputs = fn(self.inputs)
            self.captures += 1
        else:
            for name, tensors in batch.items():
                for static, t in zip(self.inputs[name], tensors):
                    static.copy_(t, non_blocking=True)
        self.graph.replay()
        return self.outputs
