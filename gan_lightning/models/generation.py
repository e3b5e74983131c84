"""Mixin of the games that can generate: the fixed-noise grid and ``generate(z, y)`` in [0, 1]."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class GeneratorGrid:
    """Mixin for games with a generator: ``generate(z, y)`` renders images in [0, 1] with G in eval mode;
    ``sample_images()`` renders the fixed codes ``self.fixed_z``, ``self.fixed_y`` (buffers, so they travel with
    checkpoints) for the ``SampleGrid`` callback. ``conditional`` games take labels (integers or class weights)."""

    generator: nn.Module
    grid_nrow: int
    latent_dim: int
    num_classes: int
    fixed_z: torch.Tensor
    fixed_y: torch.Tensor
    # provided by the LightningModule it is mixed into (GameModule)
    to_unit: Callable[[torch.Tensor], torch.Tensor]
    __call__: Callable[..., torch.Tensor]

    @property
    def is_conditional(self) -> bool:
        return bool(getattr(self, "conditional", True))

    @torch.no_grad()
    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """G(z[, y]) in [0, 1], G in eval mode (BN running statistics), its previous mode restored."""
        was_training = self.generator.training
        self.generator.eval()
        images = self.to_unit(self(z, y) if self.is_conditional else self(z)).float()
        self.generator.train(was_training)
        return images.contiguous()

    @torch.no_grad()
    def sample_images(self) -> tuple[torch.Tensor, int]:
        """Fixed-code samples in [0, 1] and the grid's row length."""
        return self.generate(self.fixed_z, self.fixed_y), self.grid_nrow
