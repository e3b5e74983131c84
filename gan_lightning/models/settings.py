"""Triple-GAN's groups of settings besides its schedule (``models.schedule``): the loss weights, the switches away
from the official script (``model.fidelity``) and the semi-supervised additions to C's loss (``model.additions``).
Each group's defaults, ranges and choices are written once, here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Annotated, ClassVar, Literal

from torch import nn

from gan_lightning.config_check import Range, Settings, Share
from gan_lightning.errors import ConfigError

# every loss term of the game and its weight (0 switches a term off); model.weights.<term>=... changes one
DEFAULT_WEIGHTS = MappingProxyType({
    "d_real": 1.0, "d_fake_g": 1.0, "d_fake_c": 1.0,  # D: real pairs, G's pairs, C's pairs
    "g_adv": 1.0, "c_adv": 1.0,  # G's and C's adversarial terms
    "c_supervised": 1.0, "c_entropy": 0.3, "c_balance": 1e-3, "c_l2": 1e-4,  # C: CE on labels, entropy, balance, L2
    "c_pseudo": 0.1,  # alpha_P of R_P (C's CE on G's samples)
    "c_consistency": 0.0,  # C vs. its EMA copy (mean teacher) on two draws of the augmentation of x_u, with dropout
    "c_confident": 0.0,  # CE of C on x_u against the EMA copy's hard label where it is confident (FixMatch)
})  # fmt: skip
# C's loss during its pre-training
PRETRAIN_WEIGHTS = MappingProxyType({"c_supervised": 1.0, "c_entropy": 0.3, "c_balance": 0.3, "c_l2": 1e-4,
                                     "c_consistency": 0.0, "c_confident": 0.0})  # fmt: skip
TEACHER_TERMS = ("c_consistency", "c_confident")  # the terms whose targets are the EMA copy's


def check_weights(given: Mapping | None, defaults: Mapping, name: str) -> dict[str, float]:
    """``defaults`` updated by ``given``; one line for a term the game does not have."""
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(f"model.{name} has unknown terms {unknown}; known terms are {sorted(defaults)}")
    return {**defaults, **{k: float(v) for k, v in given.items()}}


@dataclass
class Fidelity(Settings):
    """Where the game may depart from the official script; each default is the script's behaviour.

    d_unlabeled_real: D also sees unlabeled images with C's hard label as real pairs (official).
    reuse_forwards: false (official): G's step draws fresh z and C's step runs C again on its unlabeled batch (new
        dropout mask, new hard labels); true: G and C are trained on the very samples and labels D's step used.
    prob_clip: C's probabilities are clipped to [prob_clip, 1 - prob_clip] in R_L, R_P, entropy and balance (official
        1e-6); 0: exact log-softmax.
    c_bn_update: which train-mode forwards of C move its BN running statistics: ``all`` (official: every forward in
        D's and C's steps) or ``unlabeled`` (only C's forwards on its unlabeled batch; the others use batch statistics
        only).
    """

    PREFIX: ClassVar[str] = "model.fidelity"
    d_unlabeled_real: bool = True
    reuse_forwards: bool = False
    prob_clip: Annotated[float, Range(0, 0.5, high_open=True)] = 1e-6
    c_bn_update: Literal["all", "unlabeled"] = "all"


@dataclass
class Additions(Settings):
    """Semi-supervised additions to C's training, off in the official recipe (their loss terms: ``c_consistency``
    and ``c_confident`` in the weights).

    augment: random label-preserving transform of C's training inputs (e.g. ``RandomAffine``); None: none. D always
        sees the images as they are.
    teacher_augment: the transform of the EMA copy's inputs for the two terms; None: ``augment`` (e.g. a weak one here
        and a strong one in ``augment``, as FixMatch).
    confidence_threshold: ``c_confident`` trains C on the EMA copy's hard labels where its confidence is this or more.
    align_distribution: align the EMA copy's probabilities to uniform class frequencies (the labeled split is
        class-balanced) by the running mean of its predictions (momentum ``align_momentum``).
    """

    PREFIX: ClassVar[str] = "model.additions"
    augment: nn.Module | None = None
    teacher_augment: nn.Module | None = None
    confidence_threshold: Share = 0.95
    align_distribution: bool = False
    align_momentum: Annotated[float, Range(0, 1, high_open=True)] = 0.999

    def check_used(self, *weights: Mapping[str, float]) -> None:
        """One line when distribution alignment is on but no term of ``weights`` uses the EMA copy's targets."""
        if self.align_distribution and not any(w[t] for w in weights for t in TEACHER_TERMS):
            raise ConfigError(
                "model.additions.align_distribution=true changes the EMA copy's targets, but no term uses them: set "
                "model.weights or model.pretrain_weights c_consistency or c_confident above 0"
            )
