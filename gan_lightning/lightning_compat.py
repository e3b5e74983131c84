"""Every use of Lightning's internals, in one place, each with the reason no public API does the job.

The games optimize manually and the datamodule serves streams that change between phases; a few questions they ask
the trainer have no public answer in Lightning 2.x. ``tests/test_lightning_compat.py`` runs each function against the
installed Lightning and fails, naming the function, when a release in the pinned range (pyproject.toml) moves one.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.overrides.distributed import _sync_module_states
from lightning.pytorch.strategies import DDPStrategy
from torch import nn


def logs_this_step(trainer: L.Trainer) -> bool:
    """Whether the current batch's ``self.log`` values reach the loggers (every ``log_every_n_steps`` batches). The
    games hand their step scalars to Lightning only then: each ``self.log`` call costs ~1 ms of bookkeeping on a CPU,
    more than a small GAN's step is worth on the other batches."""
    return bool(trainer._logger_connector.should_update_logs)


def batches_started(trainer: L.Trainer) -> int:
    """Batches of the current epoch started so far, this one included (the adversarial warm-up's progress within an
    epoch); restored on resume, unlike a counter kept by the game."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)


def batches_completed(trainer: L.Trainer) -> int:
    """Batches of the current epoch completed so far (the time left; where a resumed epoch continues)."""
    return int(trainer.fit_loop.epoch_loop.batch_progress.current.completed)


def total_batch_index(trainer: L.Trainer) -> int:
    """Index of the current batch over the whole run (a D:G cycle's position, restored on resume)."""
    return int(trainer.fit_loop.epoch_loop.total_batch_idx)


def resuming_mid_epoch(trainer: L.Trainer) -> bool:
    """Whether the fit loop is restarting from a checkpoint saved inside an epoch (its dataloader then skips the
    batches already done: the streams are not resumable samplers Lightning could restore)."""
    return bool(trainer.fit_loop.restarting)


def count_optimizer_step(optimizer: Any) -> None:
    """Advance Lightning's step count (``global_step``, logging and checkpoint cadence) for a step taken on the raw
    optimizer inside a replayed CUDA graph, where ``LightningOptimizer.step`` cannot run."""
    optimizer._on_before_step()
    optimizer._on_after_step()


class DDPWithoutWrapper(DDPStrategy):
    """Lightning's DDP with the model left unwrapped: its states are broadcast from rank 0 instead of wrapping it in
    ``DistributedDataParallel`` (whose reducer expects one backward per forward, which a game's D, G and C steps
    are not). ``_setup_model`` is the strategy's hook for the wrapping; there is no public one."""

    def _setup_model(self, model: nn.Module) -> nn.Module:
        _sync_module_states(model)
        return model
