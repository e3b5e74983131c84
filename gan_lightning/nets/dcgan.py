"""DCGAN (Radford et al. 2015) generator and discriminator for 28x28 and 32x32 (and 64x64) images.

Conditional variants (cDCGAN) take a label: the generator concatenates its code to z, the discriminator
adds it to the image as constant feature planes (one-hot) or as one learned plane (embedding).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.blocks import LabelCode, check_image_shape, check_sizes

SUPPORTED = "square images of side 28, 32 or 64 (any channels)"


def _n_upsamplings(image_shape: Sequence[int], net: str) -> tuple[tuple[int, int, int], int, int]:
    """How many stride-2 stages reach the image from a small base (7x7 for 28, 4x4 for 32/64)."""
    shape = tuple(int(s) for s in image_shape)
    ok = len(shape) == 3 and shape[1] == shape[2] and shape[1] in (28, 32, 64)
    shape = check_image_shape(net, image_shape, SUPPORTED, ok)
    side, n = shape[1], 0
    while side % 2 == 0 and side > 4:
        side //= 2
        n += 1
    return shape, n, side


def _init_dcgan(module: nn.Module) -> None:
    """N(0, 0.02) weights, BN gamma ~ N(1, 0.02), as in the DCGAN paper."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class DCGANGenerator(nn.Module):
    """z -> linear to (base_channels * 2^(n-1), s, s) -> n x [ConvT stride 2, BN, ReLU] -> Tanh image."""

    def __init__(
        self,
        latent_dim: int,
        image_shape: Sequence[int],
        base_channels: int = 64,
        num_classes: int = 0,
        label_mode: str = "onehot",
        label_dim: int | None = None,
    ) -> None:
        super().__init__()
        check_sizes("DCGANGenerator", latent_dim=latent_dim, base_channels=base_channels)
        self.image_shape, n, self.side = _n_upsamplings(image_shape, "DCGANGenerator")
        self.latent_dim = int(latent_dim)
        self.label = LabelCode(num_classes, label_mode, label_dim) if num_classes else None
        self.ch = base_channels * 2 ** (n - 1)
        in_dim = self.latent_dim + (self.label.dim if self.label else 0)
        self.project = nn.Sequential(
            nn.Linear(in_dim, self.ch * self.side**2, bias=False), nn.BatchNorm1d(self.ch * self.side**2), nn.ReLU(True)
        )
        layers: list[nn.Module] = []
        ch = self.ch
        for i in range(n):
            last = i == n - 1
            out = self.image_shape[0] if last else ch // 2
            layers.append(nn.ConvTranspose2d(ch, out, 4, 2, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(out), nn.ReLU(True)]
            ch = out
        self.net = nn.Sequential(*layers)
        _init_dcgan(self)

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            z = torch.cat([z, self.label(y, z.dtype)], dim=1)
        return self.net(self.project(z).view(-1, self.ch, self.side, self.side))


NORMS = ("batch", "none", "spectral")


class DCGANDiscriminator(nn.Module):
    """n x [Conv stride 2, norm (not on the first), LeakyReLU 0.2] -> linear -> one logit.

    ``norm``: ``batch`` (DCGAN's batch norm), ``none``, or ``spectral`` (spectral normalisation of every conv and
    the linear layer, Miyato et al. 2018). The last two treat each example on its own (no batch statistics), as a
    game that scores real and fake pairs in separate forwards (Triple-GAN) needs."""

    def __init__(
        self,
        image_shape: Sequence[int],
        base_channels: int = 64,
        num_classes: int = 0,
        label_mode: str = "onehot",
        label_dim: int | None = None,
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if norm not in NORMS:
            raise ConfigError(f"DCGANDiscriminator norm={norm!r} is not one of {list(NORMS)}")
        check_sizes("DCGANDiscriminator", base_channels=base_channels)
        self.image_shape, n, side = _n_upsamplings(image_shape, "DCGANDiscriminator")
        c, h, w = self.image_shape
        self.label = (
            LabelCode(num_classes, label_mode, h * w if label_mode == "embedding" else None) if num_classes else None
        )
        label_planes = 0 if self.label is None else (num_classes if label_mode == "onehot" else 1)
        layers: list[nn.Module] = []
        ch_in, ch = c + label_planes, base_channels
        for i in range(n):
            layers.append(nn.Conv2d(ch_in, ch, 4, 2, 1, bias=i == 0))
            layers += ([nn.BatchNorm2d(ch)] if i and norm == "batch" else []) + [nn.LeakyReLU(0.2, True)]
            ch_in, ch = ch, ch * 2
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(ch_in * side * side, 1))
        _init_dcgan(self)
        if norm == "spectral":
            for m in self.net:
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.utils.parametrizations.spectral_norm(m)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.label is not None:
            code = self.label(y, x.dtype)
            _, _, h, w = x.shape
            planes = (
                code[:, :, None, None].expand(-1, -1, h, w) if self.label.mode == "onehot" else code.view(-1, 1, h, w)
            )
            x = torch.cat([x, planes], dim=1)
        return self.net(x).squeeze(1)
