"""Loss terms as pure functions of network outputs.

Discriminators return logits; ``-log D`` and ``-log(1 - D)`` are computed as softplus of the logit, which is
the binary cross-entropy of the official scripts without its overflow. Equation numbers refer to
Goodfellow et al. 2014 ("GAN") and Li et al. 2017, *Triple Generative Adversarial Nets* ("Triple-GAN").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def bce_real(logits: torch.Tensor) -> torch.Tensor:
    """Per-example ``-log D`` (the pair is labelled real)."""
    return F.softplus(-logits)


def bce_fake(logits: torch.Tensor) -> torch.Tensor:
    """Per-example ``-log(1 - D)`` (the pair is labelled fake)."""
    return F.softplus(logits)


# --- GAN ------------------------------------------------------------------------------------------------
def d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """GAN Eq. (1), the discriminator's side: ``-E[log D(x)]`` and ``-E[log(1 - D(G(z)))]`` (returned apart)."""
    return bce_real(real_logits).mean(), bce_fake(fake_logits).mean()


def g_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """Generator loss. ``minimax``: GAN Eq. (1) as written, minimise ``E[log(1 - D(G(z)))]``;
    ``non_saturating``: the paper's practical variant (Sec. 3), minimise ``-E[log D(G(z))]``."""
    if kind == "non_saturating":
        return bce_real(fake_logits).mean()
    if kind == "minimax":
        return -bce_fake(fake_logits).mean()
    raise ValueError(f"unknown generator loss {kind!r}; choose 'non_saturating' or 'minimax'")


# --- Triple-GAN: the adversarial game, Eq. (1) U(C, G, D) -------------------------------------------------
def d_real(logits: torch.Tensor) -> torch.Tensor:
    """Triple-GAN Eq. (1), first term: ``-E_p(x,y)[log D(x, y)]`` over real pairs."""
    return bce_real(logits).mean()


def d_fake_g(logits: torch.Tensor) -> torch.Tensor:
    """Triple-GAN Eq. (1), third term (D's side, before its (1 - alpha)): ``-E_pg[log(1 - D(G(z,y), y))]``."""
    return bce_fake(logits).mean()


def d_fake_c(logits: torch.Tensor, probs: torch.Tensor | None = None) -> torch.Tensor:
    """Triple-GAN Eq. (1), second term (D's side, before its alpha): ``-E_pc[log(1 - D(x, y))]``.

    ``probs=None``: logits of the pairs (x, argmax C(x)). Otherwise ``logits`` is (B, K) for every class and the
    expectation over y ~ p_c(y|x) is taken exactly with the (detached) class probabilities.
    """
    if probs is None:
        return bce_fake(logits).mean()
    return (probs.detach() * bce_fake(logits)).sum(1).mean()


def g_adversarial(logits: torch.Tensor) -> torch.Tensor:
    """Triple-GAN Eq. (1) for G (non-saturating form, as the official code): ``-E_pg[log D(G(z,y), y)]``."""
    return bce_real(logits).mean()


def c_adversarial(logits: torch.Tensor, probs: torch.Tensor, objective: str = "argmax") -> torch.Tensor:
    """Triple-GAN Eq. (1) for C (non-saturating): ``-E_x E_{y~p_c(y|x)}[log D(x, y)]``; the gradient reaches C
    through p_c (Sec. 3.2). ``integrate``: ``logits`` (B, K) for all classes, weighted by ``probs``;
    ``argmax``: ``logits`` (B,) at C's hard label, weighted by C's max probability."""
    if objective == "integrate":
        return (probs * bce_real(logits)).sum(1).mean()
    if objective == "argmax":
        return (probs.max(1).values * bce_real(logits)).mean()
    raise ValueError(f"unknown Triple-GAN objective {objective!r}; choose 'argmax' or 'integrate'")


# --- Triple-GAN: C's regularisers -------------------------------------------------------------------------
def _log_probs(logits: torch.Tensor, eps: float) -> torch.Tensor:
    """``log p_c(.|x)``; with ``eps > 0`` the probabilities are first clipped to ``[eps, 1 - eps]`` as in the official
    Triple-GAN code (a class predicted below ``eps`` then passes no gradient)."""
    if eps:
        return F.softmax(logits.float(), dim=1).clamp(eps, 1.0 - eps).log()
    return F.log_softmax(logits.float(), dim=1)


def supervised(logits: torch.Tensor, targets: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Triple-GAN Eq. (2), R_L: cross-entropy of C on labeled pairs ``E_p(x,y)[-log p_c(y|x)]`` (``eps``: see
    ``_log_probs``)."""
    return F.nll_loss(_log_probs(logits, eps), targets) if eps else F.cross_entropy(logits, targets)


def pseudo_label(logits: torch.Tensor, targets: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Triple-GAN Eq. (3), R_P: cross-entropy of C on generated pairs ``E_pg[-log p_c(y|x)]`` (``eps``: see
    ``_log_probs``)."""
    return supervised(logits, targets, eps)


def entropy(logits: torch.Tensor, eps: float = 0.0) -> torch.Tensor:
    """Confidence term on unlabeled data (Triple-GAN Sec. 4 / official script): mean ``H(p_c(.|x))``, the log taken
    of the clipped probabilities when ``eps > 0``."""
    logp = F.log_softmax(logits.float(), dim=1)
    return -(logp.exp() * (_log_probs(logits, eps) if eps else logp)).sum(1).mean()


def class_balance(logits: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Balance term (official script): cross-entropy of the batch-mean prediction against the uniform
    distribution, ``-(1/K) sum_k log mean_x p_c(k|x)``; small when C uses every class equally."""
    mean = (
        F.softmax(logits.float(), dim=1).mean(0).clamp(eps, 1.0 - eps)
        if eps
        else F.softmax(logits.float(), dim=1).mean(0)
    )
    return -mean.log().mean()


def consistency(logits: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Consistency on unlabeled data (mean teacher, Tarvainen & Valpola 2017; the journal version of Triple-GAN adds
    such a term to C): squared distance between C's class probabilities on one random augmentation of x and the EMA
    classifier's (fixed) probabilities on another, both with dropout, summed over classes, averaged over the batch."""
    return (F.softmax(logits.float(), dim=1) - target_probs.detach()).pow(2).sum(1).mean()


def confident_label(logits: torch.Tensor, teacher_probs: torch.Tensor, threshold: float) -> torch.Tensor:
    """Self-training on unlabeled data (FixMatch, Sohn et al. 2020, with the EMA classifier as the labeller; a
    relative of Triple-GAN's R_P, Eq. 3, on real instead of generated images): cross-entropy of C on one augmentation
    of x against the teacher's hard label on another, for the images whose teacher confidence is at least
    ``threshold``; the others count as 0 in the batch mean."""
    confidence, label = teacher_probs.detach().max(1)
    per_image = F.cross_entropy(logits.float(), label, reduction="none")
    return (per_image * (confidence >= threshold)).mean()


def align_distribution(probs: torch.Tensor, marginal: torch.Tensor, prior: torch.Tensor | None = None) -> torch.Tensor:
    """Distribution alignment (ReMixMatch, Berthelot et al. 2020) of a teacher's class probabilities: each row times
    ``prior / marginal`` (``marginal``: the running mean of the teacher's predictions on unlabeled data; ``prior``:
    the labeled class frequencies, uniform when None), renormalised. Classes the teacher over-predicts lose mass."""
    ratio = (prior if prior is not None else torch.full_like(marginal, 1.0 / marginal.numel())) / marginal.clamp_min(
        1e-6
    )
    aligned = probs * ratio
    return aligned / aligned.sum(1, keepdim=True)


def l2(weight: torch.Tensor) -> torch.Tensor:
    """Weight decay on C's last layer: the sum of squared weights."""
    return weight.pow(2).sum()
