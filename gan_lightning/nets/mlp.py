"""Fully-connected generator and discriminators (Goodfellow et al. 2014; Mirza & Osindero 2014 when conditional)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.blocks import (
    GaussianNoise,
    LabelCode,
    Maxout,
    check_image_shape,
    check_probabilities,
    check_sizes,
    make_dropout,
)


class MLPGenerator(nn.Module):
    """z (and optionally y) -> hidden LeakyReLU layers -> image in [-1, 1] (``output='tanh'``) or [0, 1]
    (``'sigmoid'``)."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        hidden: Sequence[int] = (256, 512, 1024),
        num_classes: int = 0,
        label_mode: str = "onehot",
        label_dim: int | None = None,
        batch_norm: bool = False,
        output: str = "tanh",
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("MLPGenerator", image_shape, "any (C, H, W)", True)
        check_sizes("MLPGenerator", latent_dim=latent_dim, hidden=hidden)
        self.latent_dim = int(latent_dim)
        self.label = LabelCode(num_classes, label_mode, label_dim) if num_classes else None
        layers: list[nn.Module] = []
        width = self.latent_dim + (self.label.dim if self.label else 0)
        for h in hidden:
            layers += [nn.Linear(width, h)] + ([nn.BatchNorm1d(h)] if batch_norm else []) + [nn.LeakyReLU(0.2)]
            width = h
        if output not in ("tanh", "sigmoid"):
            raise ConfigError(f"MLPGenerator output={output!r} is not one of ['tanh', 'sigmoid']")
        layers += [nn.Linear(width, math.prod(self.image_shape)), nn.Tanh() if output == "tanh" else nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = torch.cat([z, self.label(y, z.dtype)], dim=1)
        return self.net(z).view(-1, *self.image_shape)


class MLPDiscriminator(nn.Module):
    """image (and optionally y) -> hidden LeakyReLU layers with dropout -> one logit; optional Gaussian
    instance noise on the input (``sigma_in``) and after each hidden layer (``sigma_hidden``)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden: Sequence[int] = (1024, 512, 256),
        num_classes: int = 0,
        label_mode: str = "onehot",
        label_dim: int | None = None,
        dropout: float = 0.3,
        sigma_in: float = 0.0,
        sigma_hidden: float = 0.0,
        fast_dropout: bool = True,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("MLPDiscriminator", image_shape, "any (C, H, W)", True)
        check_sizes("MLPDiscriminator", hidden=hidden)
        check_probabilities("MLPDiscriminator", dropout=dropout)
        if sigma_in < 0 or sigma_hidden < 0:
            raise ConfigError(
                f"MLPDiscriminator sigma_in={sigma_in}, sigma_hidden={sigma_hidden}: noise levels must be >= 0"
            )
        self.label = LabelCode(num_classes, label_mode, label_dim) if num_classes else None
        self.noise_in = GaussianNoise(sigma_in)
        layers: list[nn.Module] = []
        width = math.prod(self.image_shape) + (self.label.dim if self.label else 0)
        for h in hidden:
            layers += [
                nn.Linear(width, h),
                nn.LeakyReLU(0.2),
                GaussianNoise(sigma_hidden),
                make_dropout(dropout, fast_dropout),
            ]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.noise_in(x.flatten(1))
        if self.label is not None:
            h = torch.cat([h, self.label(y, h.dtype)], dim=1)
        return self.net(h).squeeze(1)


class MaxoutDiscriminator(nn.Module):
    """Goodfellow et al. 2014's MNIST discriminator: dropout on the input, maxout hidden layers, one logit."""

    def __init__(
        self,
        image_shape: Sequence[int],
        hidden: Sequence[int] = (240, 240),
        pieces: int = 5,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
        num_classes: int = 0,
        label_mode: str = "onehot",
        fast_dropout: bool = True,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("MaxoutDiscriminator", image_shape, "any (C, H, W)", True)
        check_sizes("MaxoutDiscriminator", hidden=hidden, pieces=pieces)
        check_probabilities("MaxoutDiscriminator", input_dropout=input_dropout, dropout=dropout)
        self.label = LabelCode(num_classes, label_mode) if num_classes else None
        layers: list[nn.Module] = [make_dropout(input_dropout, fast_dropout)]
        width = math.prod(self.image_shape) + (self.label.dim if self.label else 0)
        for h in hidden:
            layers += [Maxout(width, h, pieces), make_dropout(dropout, fast_dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = x.flatten(1)
        if self.label is not None:
            h = torch.cat([h, self.label(y, h.dtype)], dim=1)
        return self.net(h).squeeze(1)


class MLPClassifier(nn.Module):
    """image -> hidden ReLU layers with dropout -> class logits (the reports' fully-connected baseline)."""

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int = 10,
        hidden: Sequence[int] = (512, 256),
        dropout: float = 0.5,
        fast_dropout: bool = True,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("MLPClassifier", image_shape, "any (C, H, W)", True)
        if not hidden or any(int(h) <= 0 for h in hidden):
            raise ConfigError(f"MLPClassifier hidden={list(hidden)} must be a non-empty list of positive widths")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"MLPClassifier dropout={dropout} must be in [0, 1)")
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(self.image_shape)
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU(inplace=True), make_dropout(dropout, fast_dropout)]
            width = int(h)
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
