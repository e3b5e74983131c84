"""The GAN game (Goodfellow et al. 2014, Algorithm 1: k discriminator steps, then one generator step) with
``d_steps`` discriminator updates per ``g_steps`` generator updates; also the conditional GAN
(Mirza & Osindero 2014) when ``conditional=True``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

import torch
from torch import nn

from gan_lightning import losses
from gan_lightning.config_check import PositiveInt, check_arguments
from gan_lightning.errors import ConfigError
from gan_lightning.lightning_compat import total_batch_index
from gan_lightning.models.base import GameModule, Optimizers
from gan_lightning.models.generation import GeneratorGrid, Samples
from gan_lightning.nets.blocks import batch_stat_layers


class GAN(GeneratorGrid, GameModule):
    """Args:
    generator, discriminator: the networks (``G(z[, y])`` -> image, ``D(x[, y])`` -> logit).
    optimizers: the optimizer factory of each (``g``, ``d``; ``functools.partial``-like, from Hydra ``_partial_``).
    loss: ``non_saturating`` (-log D(G(z))) or ``minimax`` (log(1 - D(G(z)))) for G.
    d_steps, g_steps: D and G updates per cycle of ``max(d_steps, g_steps)`` batches, D before G within a batch:
        1:1 updates both on every batch (DCGAN), 5:1 updates D on 5 batches and G on the 5th, 1:5 the reverse.
    conditional: pass labels to both networks; fakes get labels drawn uniformly.
    samples: how G's samples are rendered for the outside: the grid's size and seed, an EMA copy of G
        (``generation.Samples``).
    joint_d_forward: D scores the real and the fake batch in one forward pass when it has no batch statistics (the
        same scores, larger matrix products); false, or a D with batch norm (DCGAN): one forward each.
    reuse_g_forward: on a batch with both a D and a G step, G's samples are generated once, with their graph: D's
        step scores them detached and G's step trains through them (as PyTorch's DCGAN example). The losses are
        those of a fresh G forward in G's step (same z, G unchanged in between); G's batch-norm running
        statistics move once per batch instead of twice. false: G runs again in its step.
    data_range, latent_dist, channels_last, batch_sizes ({real: N}), epoch_length, epochs: ``GameModule``.
    """

    STREAMS: ClassVar[dict[str, str]] = {"real": "train"}  # one batch of real images (with labels if conditional)
    EPOCH_LENGTH = "real"  # one pass over the training set
    OPTIMIZERS = ("g", "d")
    CUDA_GRAPHS_AUTO = False  # recorded iterations measured no faster than eager ones (trainer.cuda_graphs=true: on)
    GRAPH_KINDS = 3  # recorded: batches with D and G steps, D only (d_steps > g_steps), G only (g_steps > d_steps)

    def __init__(
        self,
        generator: nn.Module,
        discriminator: nn.Module,
        optimizers: Mapping[str, Callable],
        latent_dim: PositiveInt = 100,
        num_classes: PositiveInt = 10,
        loss: Literal["non_saturating", "minimax"] = "non_saturating",
        d_steps: PositiveInt = 1,
        g_steps: PositiveInt = 1,
        conditional: bool = False,
        samples: Samples | None = None,
        joint_d_forward: bool = True,
        reuse_g_forward: bool = True,
        **game: Any,
    ) -> None:
        check_arguments(GAN.__init__, locals(), "model")
        super().__init__(**game)
        self.samples = samples or Samples()
        self.save_settings(samples=self.samples)
        self.set_optimizer_factories(optimizers)
        if conditional != (getattr(generator, "label", None) is not None) or conditional != (
            getattr(discriminator, "label", None) is not None
        ):
            raise ConfigError(
                "model.conditional must match the networks: give both num_classes > 0 (conditional) or neither"
            )
        self.generator, self.discriminator = generator, discriminator
        self.joint_d = bool(joint_d_forward) and not batch_stat_layers(discriminator)
        self.latent_dim, self.num_classes, self.conditional = int(latent_dim), int(num_classes), conditional
        s = self.samples
        self.init_grid(s.grid, s.seed, self.num_classes if conditional else 0, s.g_ema_decay)

    def optimized(self) -> dict[str, nn.Module]:
        return {"g": self.generator, "d": self.discriminator}

    @property
    def is_conditional(self) -> bool:
        return self.conditional

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, y) if self.conditional else self.generator(z)

    def _d(self, x: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return self.discriminator(x, y) if self.conditional else self.discriminator(x)

    def steps_now(self) -> tuple[bool, bool]:
        """Whether this batch has a D step and a G step: the batch's place in the cycle of ``max(d_steps, g_steps)``
        batches (restored on resume; host counters only, no device sync). Without a trainer: both."""
        cycle = max(self.hparams.d_steps, self.hparams.g_steps)
        phase = total_batch_index(self.trainer) % cycle if self._trainer is not None else cycle - 1
        return phase >= cycle - self.hparams.d_steps, phase >= cycle - self.hparams.g_steps

    # -- one iteration -------------------------------------------------------------------------------------
    def training_step(self, batch, batch_idx: int) -> None:
        self.log_step_scalars(self.iteration(batch, self.opt), "train/g/loss", bar="g_loss")

    def iteration_kind(self, opt: Optimizers) -> tuple[bool, bool]:
        """This batch's kind: whether it has a D step and a G step (``steps_now``)."""
        return self.steps_now()

    def iteration(self, batch, opt: Optimizers, kind: tuple[bool, bool] | None = None) -> dict[str, torch.Tensor]:
        """This batch's D and/or G step; its step scalars by logged name (D's on logging steps, and always in a
        recorded iteration: ``acceleration.IterationRecorder``, whose graph then holds them)."""
        d_step, g_step = self.iteration_kind(opt) if kind is None else kind
        return self.game_step(batch, opt, d_step, g_step, d_scalars=self.bare_steps or self.logging_step())

    def game_step(self, batch, opt: Optimizers, d_step: bool, g_step: bool, d_scalars: bool) -> dict[str, torch.Tensor]:
        x, y = batch["real"]
        n = x.shape[0]
        z = self.sample_z(n, self.latent_dim)
        y_fake = torch.randint(self.num_classes, (n,), device=x.device) if self.conditional else None
        scalars: dict[str, torch.Tensor] = {}
        fake_g = None  # G's samples with their graph, for both steps of the batch (reuse_g_forward)
        if d_step and g_step and self.hparams.reuse_g_forward:
            with self.training_only(opt.g, opt):
                fake_g = self(z, y_fake)
        if d_step:  # --- D step: ascend log D(x) + log(1 - D(G(z)))
            with self.training_only(opt.d, opt):
                if fake_g is None:
                    with torch.no_grad():
                        fake = self(z, y_fake)
                else:
                    fake = fake_g.detach()
                if self.joint_d:  # one forward over both batches (D has no batch statistics)
                    logits = self._d(
                        torch.cat([x, fake.to(x.dtype)]), torch.cat([y, y_fake]) if self.conditional else None
                    )
                    real_logits, fake_logits = logits[:n], logits[n:]
                else:
                    real_logits, fake_logits = self._d(x, y), self._d(fake, y_fake)
                loss_real, loss_fake = losses.d_loss(real_logits, fake_logits)
                loss_d = loss_real + loss_fake
                self.step(opt.d, loss_d, "discriminator")
            if d_scalars:
                scalars.update(
                    {
                        "train/d/loss": loss_d.detach(),
                        "train/d/real": loss_real.detach(),
                        "train/d/fake": loss_fake.detach(),
                        "train/d/D(x)": torch.sigmoid(real_logits.detach()).mean(),
                        "train/d/D(G(z))": torch.sigmoid(fake_logits.detach()).mean(),
                    }
                )
        if g_step:  # --- G step, on the D just updated
            with self.training_only(opt.g, opt):
                fake_logits = self._d(self(z, y_fake) if fake_g is None else fake_g, y_fake)
                loss_g = losses.g_loss(fake_logits, self.hparams.loss)
                self.step(opt.g, loss_g, "generator")
            self.update_generator_ema()
            scalars["train/g/loss"] = loss_g.detach()
        return scalars
