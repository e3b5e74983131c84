"""Supervised baseline: the classifier alone, trained on the labeled examples only (same split, same evaluation
as Triple-GAN's C): the number the semi-supervised game has to beat."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Literal

from torch import nn

from gan_lightning import losses
from gan_lightning.models.base import GameModule
from gan_lightning.models.evaluation import ClassifierEvaluation


class Classifier(ClassifierEvaluation, GameModule):
    """Args:
    classifier: the network (logits); optimizer: its optimizer factory.
    l2_weight: weight of the L2 penalty on the classifier's last layer (``classifier.head``).
    ema_decay: decay of the evaluated EMA copy.
    batch_sizes ({labeled: N}), epoch_length, epochs: what it draws from the data (``GameModule``).
    """

    STREAMS: ClassVar[dict[str, str]] = {"labeled": "labeled"}
    EPOCH_LENGTH = "labeled"  # one pass over the labeled images
    OPTIMIZERS = ("c",)
    MONITOR = "val/err_ema"

    def __init__(
        self,
        classifier: nn.Module,
        optimizer: Callable,
        num_classes: int = 10,
        l2_weight: float = 1e-4,
        ema_decay: float = 0.99,
        data_range: Literal["tanh", "unit"] = "unit",
        channels_last: bool = True,
        **plan: Any,
    ) -> None:
        super().__init__(data_range=data_range, channels_last=channels_last, **plan)
        # networks and optimizer factories stay out of the hparams (checkpoints load with weights_only)
        self.save_hyperparameters(ignore=["classifier", "optimizer"])
        self.set_optimizer_factories({"c": optimizer}, key="model.optimizer")
        self.classifier = classifier
        self.init_evaluation(classifier, num_classes, ema_decay)

    def optimized(self) -> dict[str, nn.Module]:
        return {"c": self.classifier}

    def training_step(self, batch, batch_idx: int) -> None:
        x, y = batch["labeled"]
        ce = losses.supervised(self.classifier(x), y)
        loss = ce + self.hparams.l2_weight * losses.l2(self.classifier.head.weight) if self.hparams.l2_weight else ce
        self.step(self.opt.c, loss, "classifier")
        self.update_ema()
        self.log_dict({"train/c/supervised": ce.detach(), "train/c/loss": loss.detach()})
