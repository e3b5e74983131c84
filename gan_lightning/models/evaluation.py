"""Mixin of the games with a classifier: test accuracy of C and of its EMA copy (torchmetrics), best-so-far errors,
the EMA update (also inside CUDA graphs) and the EMA copy as a mean teacher; a confusion matrix at the end."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MinMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from gan_lightning.errors import ConfigError


@contextmanager
def batch_stats_frozen(module: nn.Module, frozen: bool = True) -> Iterator[None]:
    """Inside the block, train-mode forwards of ``module`` normalise with their batch statistics as usual but leave
    its BN running statistics where they are (momentum 0); ``frozen=False``: no change."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if frozen else []
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


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


class ClassifierEvaluation:
    """Mixin: test/val accuracy of ``self.classifier`` and of its EMA copy ``self.ema`` (torchmetrics),
    best-so-far errors, and a confusion-matrix figure of the EMA classifier at the end of training."""

    classifier: nn.Module
    ema: AveragedModel
    # provided by the LightningModule it is mixed into (GameModule)
    bare_steps: bool
    trainer: Any
    global_step: int
    log: Callable[..., None]

    def init_evaluation(self, classifier: nn.Module, num_classes: int, ema_decay: float) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay={ema_decay} must be in [0, 1)")
        self.num_classes = num_classes
        self.ema = AveragedModel(copy.deepcopy(classifier), multi_avg_fn=ema_with_warmup(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.val_acc = nn.ModuleDict({k: MulticlassAccuracy(num_classes, average="micro") for k in ("c", "ema")})
        self.best_err = nn.ModuleDict({k: MinMetric() for k in ("c", "ema")})
        self.confmat = MulticlassConfusionMatrix(num_classes)

    @contextmanager
    def ema_as_teacher(self) -> Iterator[None]:
        """The EMA classifier as a mean teacher: in training mode (dropout, batch statistics), as in Tarvainen &
        Valpola 2017, without moving its BN running statistics (they stay the average of C's)."""
        was_training = self.ema.training
        self.ema.train()
        try:
            with batch_stats_frozen(self.ema):
                yield
        finally:
            self.ema.train(was_training)

    def update_ema(self) -> None:
        """One EMA update. With ``bare_steps`` (inside a CUDA graph) the averaging function is applied directly:
        ``AveragedModel.update_parameters`` reads its counter back to the host; the copy has been initialised by
        an earlier update."""
        if not (self.bare_steps and getattr(self, "_ema_started", False)):
            self.ema.update_parameters(self.classifier)
            self._ema_started = True
            return
        averaged = [*self.ema.module.parameters(), *self.ema.module.buffers()]
        current = [*self.classifier.parameters(), *self.classifier.buffers()]
        floats = [(a.detach(), c.detach()) for a, c in zip(averaged, current) if a.is_floating_point()]
        others = [(a, c) for a, c in zip(averaged, current) if not a.is_floating_point()]
        self.ema.multi_avg_fn(*map(list, zip(*floats)), self.ema.n_averaged)
        if others:
            torch._foreach_copy_(*map(list, zip(*others)))
        self.ema.n_averaged += 1

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc["c"].update(self.classifier(x).argmax(1), y)
        pred_ema = self.ema(x).argmax(1)
        self.val_acc["ema"].update(pred_ema, y)
        self.confmat.update(pred_ema, y)

    def on_validation_epoch_end(self) -> None:
        for k in ("c", "ema"):
            err = 1.0 - self.val_acc[k].compute()
            self.val_acc[k].reset()
            if not self.trainer.sanity_checking:
                self.best_err[k].update(err)
                self.log(f"val/err_{k}", err, prog_bar=k == "ema")
                self.log(f"val/acc_{k}", 1.0 - err)
                self.log(f"val/best_err_{k}", self.best_err[k].compute())

    def on_train_end(self) -> None:
        """Confusion matrix of the EMA classifier on the last validation pass, as a TensorBoard figure
        (computed on every process: the counts are summed across them; drawn by rank 0)."""
        if self.confmat.update_count == 0:
            return
        counts = self.confmat.compute()
        self.confmat.reset()
        if self.trainer.global_rank != 0:
            return
        fig, _ = self.confmat.plot(val=counts)
        fig.set_size_inches(6, 6)
        for logger in self.trainer.loggers:
            if hasattr(logger.experiment, "add_figure"):
                logger.experiment.add_figure("val/confusion_matrix_ema", fig, global_step=self.global_step)

    def on_validation_epoch_start(self) -> None:
        self.confmat.reset()
