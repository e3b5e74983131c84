"""Mixin of the games with a classifier: accuracy of C and of its EMA copy (torchmetrics) on the validation set
(``val/*``, held-out training images: what checkpoints and sweeps choose by, with its best so far) and on the official
test set (``test/*``, logged every epoch, never chosen by); the EMA update (also inside CUDA graphs) and the EMA copy
as a mean teacher; confusion matrices at the end."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MinMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from gan_lightning.errors import ConfigError
from gan_lightning.models.averaging import average_into, averaged_copy


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


EVAL_SETS = ("val", "test")  # the names of the evaluation passes (``EvalBatches.name``), the prefix of their metrics


class ClassifierEvaluation:
    """Mixin: errors of ``self.classifier`` and of its EMA copy ``self.ema`` on every evaluation pass of an epoch
    (``val/err_c``, ``val/err_ema``, ``val/best_err_*``; ``test/err_c``, ``test/err_ema``: no best, the test set
    chooses nothing), and confusion-matrix figures of the EMA classifier at the end of training."""

    VALIDATES = True  # the datamodule holds out data.val_size training images for val/*
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
        self.ema = averaged_copy(classifier, ema_decay)
        self.eval_acc = nn.ModuleDict(
            {
                s: nn.ModuleDict({k: MulticlassAccuracy(num_classes, average="micro") for k in ("c", "ema")})
                for s in EVAL_SETS
            }
        )
        self.best_err = nn.ModuleDict({k: MinMetric() for k in ("c", "ema")})  # on the validation set only
        self.confmat = nn.ModuleDict({s: MulticlassConfusionMatrix(num_classes) for s in EVAL_SETS})
        self.eval_names: list[str] = list(EVAL_SETS)  # the passes of this run, in the order of its loaders

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
        """One update of C's EMA copy (also inside a CUDA graph: ``average_into``)."""
        average_into(self.ema, self.classifier, self.bare_steps)

    def on_validation_epoch_start(self) -> None:
        loaders = self.trainer.val_dataloaders
        loaders = loaders if isinstance(loaders, (list, tuple)) else [loaders]
        self.eval_names = [getattr(loader, "name", "val") for loader in loaders]
        for name in self.eval_names:
            self.confmat[name].reset()

    def validation_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        acc = self.eval_acc[self.eval_names[dataloader_idx]]
        acc["c"].update(self.classifier(x).argmax(1), y)
        pred_ema = self.ema(x).argmax(1)
        acc["ema"].update(pred_ema, y)
        self.confmat[self.eval_names[dataloader_idx]].update(pred_ema, y)

    def on_validation_epoch_end(self) -> None:
        for name in self.eval_names:
            for k in ("c", "ema"):
                err = 1.0 - self.eval_acc[name][k].compute()
                self.eval_acc[name][k].reset()
                if self.trainer.sanity_checking:
                    continue
                self.log(f"{name}/err_{k}", err, prog_bar=k == "ema", add_dataloader_idx=False)
                self.log(f"{name}/acc_{k}", 1.0 - err, add_dataloader_idx=False)
                if name == "val":
                    self.best_err[k].update(err)
                    self.log(f"val/best_err_{k}", self.best_err[k].compute(), add_dataloader_idx=False)

    def on_train_end(self) -> None:
        """Confusion matrices of the EMA classifier on the last evaluation passes, as TensorBoard figures
        (computed on every process: the counts are summed across them; drawn by rank 0)."""
        for name in self.eval_names:
            if self.confmat[name].update_count == 0:
                continue
            counts = self.confmat[name].compute()
            self.confmat[name].reset()
            if self.trainer.global_rank != 0:
                continue
            fig, _ = self.confmat[name].plot(val=counts)
            fig.set_size_inches(6, 6)
            for logger in self.trainer.loggers:
                if hasattr(logger.experiment, "add_figure"):
                    logger.experiment.add_figure(f"{name}/confusion_matrix_ema", fig, global_step=self.global_step)
