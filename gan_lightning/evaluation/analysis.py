"""Looking inside a classifier: saliency maps, FGSM adversarial examples, class visualisation, its confusions.
Every function takes a network in eval mode whose input is images in [0, 1] and whose output is class logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.functional.classification import multiclass_confusion_matrix


def saliency(network: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """|d score_y / d x|, the largest over channels, scaled to [0, 1] per image (Simonyan et al. 2014):
    ``(N, H, W)``."""
    x = x.clone().requires_grad_(True)
    score = network(x).gather(1, y[:, None]).sum()
    (grad,) = torch.autograd.grad(score, x)
    sal = grad.abs().amax(1)
    return sal / sal.flatten(1).amax(1).clamp_min(1e-12)[:, None, None]


def fgsm(network: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Fast gradient sign method (Goodfellow et al. 2015): ``clip(x + eps * sign(grad_x CE(f(x), y)), 0, 1)``."""
    if epsilon == 0:
        return x.clone()
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(F.cross_entropy(network(x), y), x)
    return (x + epsilon * grad.sign()).clamp(0, 1).detach()


@torch.no_grad()
def predict(network: nn.Module, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """Predicted classes of images in [0, 1] (uint8 images are scaled batch by batch)."""
    return torch.cat(
        [network(xb.float() / 255.0 if xb.dtype == torch.uint8 else xb).argmax(1) for xb in x.split(batch_size)]
    )


def accuracy(network: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``network`` on images in [0, 1] (uint8 images are scaled batch by batch)."""
    return int((predict(network, x, batch_size) == y).sum()) / len(y)


def top_confusions(pred: torch.Tensor, y: torch.Tensor, num_classes: int, k: int = 5) -> list[dict]:
    """The ``k`` most frequent mistakes, most frequent first: ``[{"true": t, "predicted": p, "count": n,
    "share_of_errors": n / errors, "share_of_class": n / |class t|}, ...]`` (ties by class order)."""
    confmat = multiclass_confusion_matrix(pred, y, num_classes)
    errors = confmat.clone().fill_diagonal_(0)
    total, per_class = int(errors.sum()), confmat.sum(1)
    counts, flat = errors.flatten().sort(descending=True, stable=True)
    return [
        {
            "true": int(i) // num_classes,
            "predicted": int(i) % num_classes,
            "count": int(n),
            "share_of_errors": int(n) / total,
            "share_of_class": int(n) / int(per_class[int(i) // num_classes]),
        }
        for n, i in zip(counts[:k], flat[:k])
        if n > 0
    ]


def fgsm_curve(network: nn.Module, x: torch.Tensor, y: torch.Tensor, epsilons, batch_size: int = 500) -> list[dict]:
    """Accuracy under FGSM at each epsilon: ``[{"epsilon": e, "accuracy": a}, ...]``."""
    rows = []
    for eps in epsilons:
        adv = torch.cat([fgsm(network, xb, yb, float(eps)) for xb, yb in zip(x.split(batch_size), y.split(batch_size))])
        rows.append({"epsilon": float(eps), "accuracy": accuracy(network, adv, y)})
    return rows


def class_visualisation(
    network: nn.Module,
    image_shape,
    num_classes: int,
    steps: int = 200,
    lr: float = 0.05,
    l2: float = 1e-2,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each class k, the image that maximises ``score_k(x) - l2 * ||x||^2`` by gradient ascent from small
    noise, kept in [0, 1] (Simonyan et al. 2014). Returns the images ``(K, C, H, W)`` and p(k | image_k)."""
    gen = torch.Generator().manual_seed(seed)
    device = next(network.parameters()).device
    x = (0.1 * torch.rand(num_classes, *image_shape, generator=gen)).to(device).requires_grad_(True)
    opt = torch.optim.Adam([x], lr=lr)
    target = torch.arange(num_classes, device=device)
    for _ in range(steps):
        score = network(x).gather(1, target[:, None]).sum()
        loss = -score + l2 * x.pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(0, 1)
    with torch.no_grad():
        probs = network(x).softmax(1).gather(1, target[:, None]).squeeze(1)
    return x.detach(), probs
