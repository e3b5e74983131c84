"""Small building blocks shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError


class GaussianNoise(nn.Module):
    """Adds N(0, sigma^2) noise in training mode; identity in eval mode."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:
            return x + self.sigma * torch.randn_like(x)
        return x


class WNLinear(nn.Linear):
    """Weight-normalised linear layer (Salimans & Kingma 2016): ``W_j = g_j * v_j / ||v_j||``.

    With ``train_scale=False`` the scale ``g`` is fixed at 1, as in Triple-GAN's discriminator.
    """

    def __init__(self, in_features: int, out_features: int, train_scale: bool = True, init_std: float = 0.05) -> None:
        super().__init__(in_features, out_features)
        nn.init.normal_(self.weight, std=init_std)
        nn.init.zeros_(self.bias)
        self.scale = nn.Parameter(torch.ones(out_features), requires_grad=train_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * (self.scale / self.weight.norm(dim=1).clamp_min(1e-6)).unsqueeze(1)
        return F.linear(x, w, self.bias)


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): the max over ``pieces`` linear pieces per output unit."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.out_features, self.pieces).amax(dim=2)


class LabelCode(nn.Module):
    """Turns labels into a code to concatenate: one-hot (``mode='onehot'``) or a learned embedding.
    Labels are integer classes ``(N,)`` or class weights ``(N, num_classes)`` (soft labels, e.g. to
    interpolate between classes: the code is the weighted mix of the class codes)."""

    def __init__(self, num_classes: int, mode: str = "onehot", dim: int | None = None) -> None:
        super().__init__()
        if mode not in ("onehot", "embedding"):
            raise ConfigError(f"label mode {mode!r} is not one of ['onehot', 'embedding']")
        self.num_classes, self.mode = num_classes, mode
        self.dim = num_classes if mode == "onehot" else int(dim or num_classes)
        self.embed = nn.Embedding(num_classes, self.dim) if mode == "embedding" else None

    def forward(self, y: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if y.is_floating_point():
            return (y @ self.embed.weight if self.embed is not None else y).to(dtype)
        if self.embed is not None:
            return self.embed(y).to(dtype)
        return one_hot(y, self.num_classes, dtype)


def one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot code of integer labels; class weights ``(N, num_classes)`` pass through unchanged."""
    return y.to(dtype) if y.is_floating_point() else F.one_hot(y, num_classes).to(dtype)


def check_image_shape(net: str, image_shape, allowed: str, ok: bool) -> tuple[int, int, int]:
    """Raise a one-line ConfigError when a network cannot take the data's image shape."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or not ok:
        raise ConfigError(f"{net} cannot take images of shape {shape}; it supports {allowed}")
    return shape


class RandomTranslate(nn.Module):
    """Shifts every image of a batch by its own random whole-pixel offset in [-max_shift, max_shift] along each
    axis (edges replicated), in training mode; identity in eval mode or with ``max_shift=0``. Runs on the batch's
    device, the same in any memory format."""

    def __init__(self, max_shift: int = 2) -> None:
        super().__init__()
        if int(max_shift) != max_shift or max_shift < 0:
            raise ConfigError(f"RandomTranslate: max_shift={max_shift} must be a whole number >= 0")
        self.max_shift = int(max_shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.max_shift
        if not self.training or m == 0:
            return x
        n, c, h, w = x.shape
        padded = F.pad(x, (m, m, m, m), mode="replicate")
        offsets = torch.randint(0, 2 * m + 1, (2, n, 1), device=x.device)
        rows = (offsets[0] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * m)
        cols = (offsets[1] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)
