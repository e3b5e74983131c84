"""Mixin of the games that can generate: the fixed-noise grid, ``generate(z, y)`` in [0, 1], and optionally an EMA copy
of G that renders them; their settings (``model.samples``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel

from gan_lightning.config_check import Decay, PositiveInt, Settings
from gan_lightning.errors import ConfigError
from gan_lightning.models.averaging import average_into, averaged_copy


@dataclass
class Samples(Settings):
    """How a game renders G's samples for the outside (the sample grids, the generator metrics, ``task=sample``); the
    game itself trains and samples G.

    grid: samples in the fixed-noise grid: a square of ``grid`` unlabeled samples, or for a conditional game ``grid``
        columns in each class's row (null: 64, or 10 a row).
    seed: the seed of the grid's fixed latent codes.
    g_ema_decay: decay of an EMA copy of G, updated after each G step, that renders them (null: G itself).
    """

    PREFIX: ClassVar[str] = "model.samples"

    grid: PositiveInt | None = None
    seed: int = 0
    g_ema_decay: Decay | None = None


class GeneratorGrid:
    """Mixin for games with a generator: ``generate(z, y)`` renders images in [0, 1] with G in eval mode;
    ``sample_images()`` renders the fixed codes ``self.fixed_z``, ``self.fixed_y`` (buffers, so they travel with
    checkpoints) for the ``SampleGrid`` callback. ``conditional`` games take labels (integers or class weights).

    With an EMA copy of G (``init_grid(..., g_ema_decay=...)``, updated by the game after each G step: call
    ``update_generator_ema()``) every image the game renders for the outside (grids, generator metrics, ``task=sample``)
    comes from the copy, the average of G's recent weights, as GANs are usually sampled (BigGAN, StyleGAN); the game
    itself trains and samples G."""

    generator: nn.Module
    g_ema: AveragedModel | None
    bare_steps: bool
    grid_nrow: int
    latent_dim: int
    num_classes: int
    fixed_z: torch.Tensor
    fixed_y: torch.Tensor
    # provided by the LightningModule it is mixed into (GameModule)
    to_unit: Callable[[torch.Tensor], torch.Tensor]
    sample_z: Callable[..., torch.Tensor]
    register_buffer: Callable[..., None]
    device: torch.device
    __call__: Callable[..., torch.Tensor]

    @property
    def is_conditional(self) -> bool:
        """Whether G takes labels (a game whose G may not overrides this)."""
        return True

    def update_generator_ema(self) -> None:
        """After a G step: the EMA copy of G one step closer to G (nothing without a copy)."""
        if self.g_ema is not None:
            average_into(self.g_ema, self.generator, self.bare_steps)

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z[, y]) in [0, 1] (G's EMA copy when the game keeps one), in eval mode (BN running statistics), its
        previous mode restored."""
        net = self.g_ema.module if self.g_ema is not None else self.generator
        was_training = net.training
        net.eval()
        images = self.to_unit(net(z, y) if self.is_conditional else net(z)).float()
        net.train(was_training)
        return images.contiguous()

    def init_grid(self, size: int | None, seed: int, classes: int = 0, g_ema_decay: float | None = None) -> None:
        """The fixed codes of the sample grid (buffers: they travel with checkpoints), ``size`` drawn with ``seed``:
        with ``classes``, one row per class and the same code down each column (``size`` None: 10 columns); else a
        square of unlabeled samples (``size`` None: 64). ``g_ema_decay``: keep an EMA copy of G with this decay, which
        renders (None: G renders)."""
        if g_ema_decay is not None and not 0.0 <= g_ema_decay < 1.0:
            raise ConfigError(f"model.samples.g_ema_decay={g_ema_decay} must be in [0, 1) (or null: no EMA copy of G)")
        self.g_ema = None if g_ema_decay is None else averaged_copy(self.generator, g_ema_decay)
        size = size or (10 if classes else 64)
        z = self.sample_z(size, self.latent_dim, generator=torch.Generator().manual_seed(seed), device="cpu")
        if classes:
            self.register_buffer("fixed_z", z.repeat(classes, 1))
            self.register_buffer("fixed_y", torch.arange(classes).repeat_interleave(size))
            self.grid_nrow = size
        else:
            self.register_buffer("fixed_z", z)
            self.register_buffer("fixed_y", torch.zeros(size, dtype=torch.long))
            self.grid_nrow = round(size**0.5)

    @torch.no_grad()
    def read_as_their_class(self, classifier: nn.Module, n: int, batch: int = 500) -> float:
        """Share of ``n`` class-balanced samples of G (fixed latent codes, G in eval mode) that ``classifier`` (in eval
        mode) labels as the class they were drawn for."""
        y = torch.arange(self.num_classes, device=self.device).repeat_interleave(n // self.num_classes)
        z = self.sample_z(n, self.latent_dim, generator=torch.Generator().manual_seed(2017), device="cpu")
        modes = self.generator.training, classifier.training
        self.generator.eval()
        classifier.eval()
        try:
            hits = sum(int((classifier(self.generator(zb.to(self.device), yb)).argmax(1) == yb).sum())
                       for zb, yb in zip(z.split(batch), y.split(batch)))  # fmt: skip
        finally:
            self.generator.train(modes[0])
            classifier.train(modes[1])
        return hits / n

    @torch.no_grad()
    def sample_images(self) -> tuple[torch.Tensor, int]:
        """Fixed-code samples in [0, 1] and the grid's row length."""
        return self.generate(self.fixed_z, self.fixed_y), self.grid_nrow
