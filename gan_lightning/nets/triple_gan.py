"""The three networks of Triple-GAN's MNIST experiment (Li et al. 2017, official script ``x2y_yz2x_xy2p_ssl_mnist``)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.blocks import (
    GaussianNoise,
    WNLinear,
    check_image_shape,
    check_probabilities,
    check_sizes,
    make_dropout,
    one_hot,
)


def _conv_bn_relu(c_in: int, c_out: int, k: int, padding: str) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, k, padding=padding, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)]


class ConvClassifier(nn.Module):
    """C: conv32 5x5 valid, pool, drop .5; conv64 3x3 same, conv64 3x3 valid, pool, drop .5;
    conv128 3x3 same x2; global average pool; dense -> class logits. Convs carry no bias (BN follows each).
    Weights ~ N(0, 0.05), last layer ~ N(0, 0.01), as in the official script. ``fast_dropout``: ``MaskDropout``
    (false: torch's ``nn.Dropout``, the same distribution from another random stream)."""

    def __init__(
        self, image_shape: Sequence[int], num_classes: int = 10, dropout: float = 0.5, fast_dropout: bool = True
    ) -> None:
        super().__init__()
        shape = check_image_shape(
            "ConvClassifier", image_shape, "images of side >= 20", min(tuple(image_shape)[1:]) >= 20
        )
        check_probabilities("ConvClassifier", dropout=dropout)
        c = shape[0]
        self.features = nn.Sequential(
            *_conv_bn_relu(c, 32, 5, "valid"),
            nn.MaxPool2d(2),
            make_dropout(dropout, fast_dropout),
            *_conv_bn_relu(32, 64, 3, "same"),
            *_conv_bn_relu(64, 64, 3, "valid"),
            nn.MaxPool2d(2),
            make_dropout(dropout, fast_dropout),
            *_conv_bn_relu(64, 128, 3, "same"),
            *_conv_bn_relu(128, 128, 3, "same"),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.head = nn.Linear(128, num_classes)
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, std=0.05)
        nn.init.normal_(self.head.weight, std=0.01)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate features (the 128-d average-pooled activations)."""
        return self.features(x)


class ConcatLabelGenerator(nn.Module):
    """G: z ~ U(0,1)^latent_dim; one-hot y concatenated before every dense layer;
    [dense, BN, softplus] per hidden layer; weight-normalised dense output with sigmoid (images in [0, 1])."""

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int = 10,
        latent_dim: int = 100,
        hidden: Sequence[int] = (500, 500),
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("ConcatLabelGenerator", image_shape, "any (C, H, W)", True)
        check_sizes("ConcatLabelGenerator", latent_dim=latent_dim, hidden=hidden)
        self.num_classes, self.latent_dim = num_classes, int(latent_dim)
        self.hidden = nn.ModuleList()
        width = self.latent_dim
        for h in hidden:
            self.hidden.append(
                nn.ModuleDict({"fc": nn.Linear(width + num_classes, h, bias=False), "bn": nn.BatchNorm1d(h)})
            )
            width = h
        self.out = WNLinear(width + num_classes, math.prod(self.image_shape), train_scale=True)

    def forward(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        code = one_hot(y, self.num_classes, z.dtype)
        h = z
        for layer in self.hidden:
            h = F.softplus(layer["bn"](layer["fc"](torch.cat([h, code], 1))))
        return torch.sigmoid(self.out(torch.cat([h, code], 1))).view(-1, *self.image_shape)


class ConcatLabelDiscriminator(nn.Module):
    """D: Gaussian noise (sigma_in) on the image; one-hot y concatenated before every weight-normalised dense
    layer (ReLU); Gaussian noise (sigma_hidden) after each hidden layer; one logit.

    ``label_twice_first``: as the official script, the first hidden layer's output gets y concatenated before its
    noise and once more after it (the second layer then sees y twice); false: once, like every other layer."""

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int = 10,
        hidden: Sequence[int] = (1000, 500, 250, 250, 250),
        sigma_in: float = 0.3,
        sigma_hidden: float = 0.5,
        label_twice_first: bool = True,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape("ConcatLabelDiscriminator", image_shape, "any (C, H, W)", True)
        check_sizes("ConcatLabelDiscriminator", hidden=hidden)
        if sigma_in < 0 or sigma_hidden < 0:
            raise ConfigError(
                f"ConcatLabelDiscriminator sigma_in={sigma_in}, sigma_hidden={sigma_hidden}: noise levels must be >= 0"
            )
        self.num_classes, self.label_twice_first = num_classes, bool(label_twice_first) and len(hidden) > 0
        self.noise_in, self.noise = GaussianNoise(sigma_in), GaussianNoise(sigma_hidden)
        widths = [math.prod(self.image_shape), *hidden]
        extra = [num_classes * (2 if i == 1 and self.label_twice_first else 1) for i in range(len(widths))]
        self.layers = nn.ModuleList(
            WNLinear(a + e, b, train_scale=False, init_std=0.1) for a, b, e in zip(widths, widths[1:], extra)
        )
        self.out = WNLinear(widths[-1] + extra[-1], 1, train_scale=False, init_std=0.1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        code = one_hot(y, self.num_classes, x.dtype)
        h = self.noise_in(x.flatten(1))
        for i, layer in enumerate(self.layers):
            h = F.relu(layer(torch.cat([h, code], 1)))
            h = self.noise(torch.cat([h, code], 1) if i == 0 and self.label_twice_first else h)
        return self.out(torch.cat([h, code], 1)).squeeze(1)
