"""Mixin of the games that train a classifier C on labeled and unlabeled images: C's regularised classification loss
(R_L, entropy, class balance, L2, and the additions: consistency with its EMA copy and its EMA copy's confident
labels, on augmented inputs), shared by Triple-GAN's pre-training and its game, and which of C's forwards move its
batch-norm running statistics."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from gan_lightning import losses
from gan_lightning.models.evaluation import batch_stats_frozen
from gan_lightning.models.settings import Additions, Fidelity


class ClassifierTerms:
    """``init_terms`` registers the augmentations and the running marginal of distribution alignment;
    ``classifier_terms`` computes C's loss terms; ``c_stats_frozen`` wraps the forwards that leave C's statistics."""

    classifier: nn.Module
    ema: nn.Module
    fidelity: Fidelity
    additions: Additions
    # provided by the LightningModule and ClassifierEvaluation it is mixed with
    register_buffer: Any
    ema_as_teacher: Any
    teacher_marginal: torch.Tensor

    def init_terms(self, num_classes: int) -> None:
        self.augment = self.additions.augment or nn.Identity()
        self.teacher_augment = self.additions.teacher_augment or self.augment
        # running mean of the EMA copy's class probabilities on unlabeled data (distribution alignment)
        self.register_buffer("teacher_marginal", torch.full((num_classes,), 1.0 / num_classes))

    def c_stats_frozen(self) -> AbstractContextManager:
        """C's forwards other than on its unlabeled batch leave its BN running statistics in place with
        ``fidelity.c_bn_update=unlabeled``."""
        return batch_stats_frozen(self.classifier) if self.fidelity.c_bn_update == "unlabeled" else nullcontext()

    def classifier_terms(self, x_l, y_l, x_u, logits_u, weights: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """R_L on (augmented) labeled data; entropy, balance [, consistency, confident labels] on C's logits
        ``logits_u`` of the augmented unlabeled images ``x_u``; L2 on C's last layer."""
        eps, add = self.fidelity.prob_clip, self.additions
        with self.c_stats_frozen():
            logits_l = self.classifier(self.augment(x_l))
        terms = {"c_supervised": losses.supervised(logits_l, y_l, eps)}
        if weights["c_entropy"]:
            terms["c_entropy"] = losses.entropy(logits_u, eps)
        if weights["c_balance"]:
            terms["c_balance"] = losses.class_balance(logits_u, eps or 1e-6)
        if weights["c_consistency"] or weights["c_confident"]:  # one teacher forward for both
            with torch.no_grad(), self.ema_as_teacher():
                target = self.ema(self.teacher_augment(x_u)).float().softmax(1)
                if add.align_distribution:
                    self.teacher_marginal.lerp_(target.mean(0), 1.0 - add.align_momentum)
                    target = losses.align_distribution(target, self.teacher_marginal)
            if weights["c_consistency"]:
                terms["c_consistency"] = losses.consistency(logits_u, target)
            if weights["c_confident"]:
                terms["c_confident"] = losses.confident_label(logits_u, target, add.confidence_threshold)
        if weights["c_l2"]:
            terms["c_l2"] = losses.l2(self.classifier.head.weight)
        return terms

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Checkpoints written before distribution alignment existed load with a uniform running marginal."""
        uniform = torch.full_like(self.teacher_marginal, 1.0 / len(self.teacher_marginal))
        state_dict.setdefault(prefix + "teacher_marginal", uniform)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[misc]
