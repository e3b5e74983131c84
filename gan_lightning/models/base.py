"""What every game shares: uint8 batches scaled on the device, optimizers from config, checkpoints that
carry their run config, and the test-set evaluation of a classifier with its EMA copy."""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel
from torchmetrics import MinMetric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from gan_lightning.errors import ConfigError, TrainingError
from gan_lightning.strategies import average_gradients

RANGES = {"tanh": (-1.0, 1.0), "unit": (0.0, 1.0)}


class GameModule(L.LightningModule):
    """Base LightningModule of the games (manual optimization: each game runs its own D/G/C steps).

    Args:
        data_range: ``tanh`` scales images to [-1, 1], ``unit`` to [0, 1] (the generator's output range).
        latent_dist: ``normal`` N(0, 1) or ``uniform`` U(0, 1) latent codes.
        channels_last: keep conv weights and image batches in NHWC memory layout (faster convolutions on
            CPU and on tensor cores; the results are the same up to float rounding).
    """

    def __init__(self, data_range: str = "tanh", latent_dist: str = "normal", channels_last: bool = True) -> None:
        super().__init__()
        if data_range not in RANGES:
            raise ConfigError(f"model.data_range={data_range!r} is not one of {list(RANGES)}")
        if latent_dist not in ("normal", "uniform"):
            raise ConfigError(f"model.latent_dist={latent_dist!r} is not one of ['normal', 'uniform']")
        self.automatic_optimization = False
        self.data_range, self.latent_dist, self.channels_last = data_range, latent_dist, bool(channels_last)
        self.run_config: dict | None = None
        # steps without Lightning's hooks and host reads: inside a CUDA graph, or in a loop without a trainer
        self.bare_steps = False

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    NETWORKS = ("discriminator", "generator", "classifier")

    def compile_networks(self, **options: Any) -> list[str]:
        """``torch.compile`` each network in place (``nn.Module.compile``: parameter names and checkpoints
        stay the same); returns the compiled networks' names. Options go to ``torch.compile`` (e.g. mode)."""
        names = [n for n in self.NETWORKS if isinstance(getattr(self, n, None), nn.Module)]
        for name in names:
            getattr(self, name).compile(**options)
        return names

    # -- data ------------------------------------------------------------------------------------------
    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """uint8 [0, 255] -> float in the model's range (done on the device, after the transfer)."""
        lo, hi = RANGES[self.data_range]
        x = x.float().mul_((hi - lo) / 255.0).add_(lo)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.dim() == 4 else x

    def to_unit(self, x: torch.Tensor) -> torch.Tensor:
        """Model range -> [0, 1] for images and grids."""
        lo, hi = RANGES[self.data_range]
        return ((x - lo) / (hi - lo)).clamp(0, 1)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        """Batches are ``{stream: (x, y)}`` or ``(x, y)``: moved directly (Lightning's generic collection walk
        costs a fast GPU step a noticeable share of its host time); anything else goes the generic way."""
        if isinstance(batch, dict) and all(isinstance(v, tuple) for v in batch.values()):
            return {k: tuple(t.to(device, non_blocking=True) for t in v) for k, v in batch.items()}
        if isinstance(batch, (tuple, list)) and all(isinstance(t, torch.Tensor) for t in batch):
            return type(batch)(t.to(device, non_blocking=True) for t in batch)
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if isinstance(batch, dict):
            return {k: self.on_after_batch_transfer(v, dataloader_idx) for k, v in batch.items()}
        x, y = batch
        return (self.scale(x) if x.dtype == torch.uint8 else x), y

    def sample_z(self, n: int, dim: int, generator: torch.Generator | None = None, device=None) -> torch.Tensor:
        device = device or self.device
        if self.latent_dist == "uniform":
            return torch.rand(n, dim, generator=generator, device=device)
        return torch.randn(n, dim, generator=generator, device=device)

    # -- optimization helpers ----------------------------------------------------------------------------
    def set_optimizer_factories(self, **factories: Callable) -> None:
        """Keep the optimizer factories (outside the hparams, so checkpoints load with weights_only) after
        checking their learning rates, so a bad one is reported before anything runs."""
        for name, factory in factories.items():
            lr = getattr(factory, "keywords", {}).get("lr")
            if lr is not None and not float(lr) > 0:
                raise ConfigError(f"model.{name}.lr={lr} must be positive")
        self.optimizer_factories = factories

    def build_optimizer(self, name: str, module: nn.Module) -> torch.optim.Optimizer:
        return self.optimizer_factories[name](params=[p for p in module.parameters() if p.requires_grad])

    def step(self, opt, loss: torch.Tensor, net: str) -> None:
        """One update of ``net`` (the network that owns ``opt``); stops training if its loss is not finite.
        The check reads the loss back from the device, so on accelerators it runs every ``log_every_n_steps``
        steps only (a host-device sync per step costs GPU runs much of their speed). With ``bare_steps`` the
        update is the optimizer's own, and the caller checks the losses (``check_finite``)."""
        if self.bare_steps:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            return
        self.check_finite({net: loss})
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        average_gradients([p for group in opt.param_groups for p in group["params"]])  # trainer=ddp: this network only
        opt.step()

    def logging_step(self) -> bool:
        """Whether this batch's step scalars reach the logger (every ``log_every_n_steps`` batches). On the CPU
        every step is logged (``callback_metrics`` stay current); on accelerators the scalars are handed to
        Lightning only on the batches that reach the logger: its per-call bookkeeping costs a fast GPU step
        more than the step itself."""
        if self._trainer is None or self.device.type == "cpu":
            return True
        return bool(self.trainer._logger_connector.should_update_logs)

    def check_finite(self, losses: Mapping[str, torch.Tensor]) -> None:
        """Stop training if a loss ``{network name: loss}`` is not finite; it reads the losses back from the
        device, so on accelerators only every ``log_every_n_steps`` steps."""
        every = 1 if self._trainer is None or self.device.type == "cpu" else self.trainer.log_every_n_steps
        if self.global_step % every:
            return
        values = torch.stack([v.detach().float() for v in losses.values()]).tolist()
        for (net, _), value in zip(losses.items(), values):
            if not np.isfinite(value):
                raise TrainingError(f"the {net} loss is {value} at global step {self.global_step} (epoch {self.current_epoch}); "
                                    "training stopped, the last good checkpoint is kept (try a lower learning rate)")

    @staticmethod
    @contextmanager
    def training_only(opt, optimizers) -> Iterator[None]:
        """Inside the block only ``opt``'s parameters require gradients (Lightning's ``toggle_optimizer``, also
        without a trainer): a backward pass through another network computes no gradients for its weights."""
        state = {p: p.requires_grad for o in optimizers for g in o.param_groups for p in g["params"]}
        for p in state:
            p.requires_grad_(False)
        for g in opt.param_groups:
            for p in g["params"]:
                p.requires_grad_(state[p])
        try:
            yield
        finally:
            for p, flag in state.items():
                p.requires_grad_(flag)

    # -- checkpoints -------------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config
        checkpoint["rng_states"] = rng_states()
        # optimizers in their CUDA-graph form are saved in the plain one (float learning rates, not capturable),
        # so the checkpoint resumes anywhere, on a CPU too; a graphed run converts them again when it resumes
        for state in checkpoint.get("optimizer_states", []):
            for group in state.get("param_groups", []):
                if isinstance(group.get("lr"), torch.Tensor):
                    group["lr"] = float(group["lr"])
                if group.get("capturable"):
                    group["capturable"] = False

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """A resumed run continues with the random streams (latent codes, dropout, noise) of the saved one."""
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])


@contextmanager
def batch_stats_frozen(module: nn.Module, frozen: bool = True) -> Iterator[None]:
    """Inside the block, train-mode forwards of ``module`` normalise with their batch statistics as usual but leave
    its BN running statistics where they are (momentum 0); ``frozen=False``: no change."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if frozen else []
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def rng_states() -> dict:
    """torch (CPU, CUDA), numpy and python random states, as tensors and plain values (``weights_only``-loadable)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
              "python": [random.getstate()[0], list(random.getstate()[1]), random.getstate()[2]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


class GeneratorGrid:
    """Mixin for games with a generator: ``generate(z, y)`` renders images in [0, 1] with G in eval mode;
    ``sample_images()`` renders the fixed codes ``self.fixed_z``, ``self.fixed_y`` (buffers, so they travel with
    checkpoints) for the ``SampleGrid`` callback. ``conditional`` games take labels (integers or class weights)."""

    generator: nn.Module
    grid_nrow: int
    latent_dim: int
    num_classes: int

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


def ema_with_warmup(decay: float) -> Callable:
    """``multi_avg_fn`` for ``AveragedModel``: exponential moving average whose decay grows as
    ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``. Without the warm-up the copy keeps the
    initial weights and BN statistics (running variance 1) for about ``1 / (1 - decay)`` steps and, with BN,
    classifies everything as one class long after the network itself has learnt. Integer buffers are copied."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        weight = 1.0 - torch.clamp((1.0 + num_averaged) / (10.0 + num_averaged), max=decay).to(averaged[0].dtype)
        torch._foreach_lerp_(averaged, current, [weight] * len(averaged))

    return update


class ClassifierEvaluation:
    """Mixin: test/val accuracy of ``self.classifier`` and of its EMA copy ``self.ema`` (torchmetrics),
    best-so-far errors, and a confusion-matrix figure of the EMA classifier at the end of training."""

    classifier: nn.Module
    ema: AveragedModel

    def init_evaluation(self, classifier: nn.Module, num_classes: int, ema_decay: float) -> None:
        if not 0.0 <= ema_decay < 1.0:
            raise ConfigError(f"model.ema_decay={ema_decay} must be in [0, 1)")
        self.num_classes = num_classes
        self.ema = AveragedModel(copy.deepcopy(classifier), multi_avg_fn=ema_with_warmup(ema_decay), use_buffers=True)
        self.ema.requires_grad_(False)
        self.val_acc = nn.ModuleDict({k: MulticlassAccuracy(num_classes, average="micro") for k in ("c", "ema")})
        self.best_err = nn.ModuleDict({k: MinMetric() for k in ("c", "ema")})
        self.confmat = MulticlassConfusionMatrix(num_classes)

    @contextmanager
    def ema_as_teacher(self) -> Iterator[None]:
        """The EMA classifier as a mean teacher: in training mode (dropout, batch statistics), as in Tarvainen &
        Valpola 2017, without moving its BN running statistics (they stay the average of C's)."""
        was_training = self.ema.training
        self.ema.train()
        try:
            with batch_stats_frozen(self.ema):
                yield
        finally:
            self.ema.train(was_training)

    def update_ema(self) -> None:
        """One EMA update. With ``bare_steps`` (inside a CUDA graph) the averaging function is applied directly:
        ``AveragedModel.update_parameters`` reads its counter back to the host; the copy has been initialised by
        an earlier update."""
        if not (self.bare_steps and getattr(self, "_ema_started", False)):
            self.ema.update_parameters(self.classifier)
            self._ema_started = True
            return
        averaged = [*self.ema.module.parameters(), *self.ema.module.buffers()]
        current = [*self.classifier.parameters(), *self.classifier.buffers()]
        floats = [(a.detach(), c.detach()) for a, c in zip(averaged, current) if a.is_floating_point()]
        others = [(a, c) for a, c in zip(averaged, current) if not a.is_floating_point()]
        self.ema.multi_avg_fn(*map(list, zip(*floats)), self.ema.n_averaged)
        if others:
            torch._foreach_copy_(*map(list, zip(*others)))
        self.ema.n_averaged += 1

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc["c"].update(self.classifier(x).argmax(1), y)
        pred_ema = self.ema(x).argmax(1)
        self.val_acc["ema"].update(pred_ema, y)
        self.confmat.update(pred_ema, y)

    def on_validation_epoch_end(self) -> None:
        for k in ("c", "ema"):
            err = 1.0 - self.val_acc[k].compute()
            self.val_acc[k].reset()
            if not self.trainer.sanity_checking:
                self.best_err[k].update(err)
                self.log(f"val/err_{k}", err, prog_bar=k == "ema")
                self.log(f"val/acc_{k}", 1.0 - err)
                self.log(f"val/best_err_{k}", self.best_err[k].compute())

    def on_train_end(self) -> None:
        """Confusion matrix of the EMA classifier on the last validation pass, as a TensorBoard figure
        (computed on every process: the counts are summed across them; drawn by rank 0)."""
        if self.confmat.update_count == 0:
            return
        counts = self.confmat.compute()
        self.confmat.reset()
        if self.trainer.global_rank != 0:
            return
        fig, _ = self.confmat.plot(val=counts)
        fig.set_size_inches(6, 6)
        for logger in self.trainer.loggers:
            if hasattr(logger.experiment, "add_figure"):
                logger.experiment.add_figure("val/confusion_matrix_ema", fig, global_step=self.global_step)

    def on_validation_epoch_start(self) -> None:
        self.confmat.reset()
