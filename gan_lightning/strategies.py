"""Data-parallel training of games: Lightning's DDP without the DistributedDataParallel wrapper.

DistributedDataParallel syncs gradients with a reducer that expects one backward pass per forward pass, using
every parameter; a game runs several backward passes per batch, each for one network (D, then G, then C), which
is what makes GAN training under plain DDP fail with "parameters that were not used in producing the loss".
Here each network's gradients are averaged across processes right before its own optimizer step
(``GameModule.step``), parameters and buffers start equal (broadcast from rank 0), and buffers (BN statistics,
the EMA copy) are re-broadcast before each validation so every process evaluates the same model."""

from __future__ import annotations

import torch
import torch.distributed as dist

from gan_lightning.lightning_compat import DDPWithoutWrapper


class GameDDPStrategy(DDPWithoutWrapper):
    """``trainer=ddp``: one process per device (CPU: gloo, GPU: nccl); streams sharded per rank by the datamodule."""

    def on_validation_start(self) -> None:
        super().on_validation_start()
        if dist.is_available() and dist.is_initialized():
            for buf in self.lightning_module.buffers():
                dist.broadcast(buf.data, src=0)


def average_gradients(params: list[torch.Tensor]) -> None:
    """Average the gradients of ``params`` across processes (one flat all-reduce); no-op in a single process."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch._utils._flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for g, synced in zip(grads, torch._utils._unflatten_dense_tensors(flat, grads)):
        g.copy_(synced)
