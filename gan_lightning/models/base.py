"""The core every game shares: images in its data range, uint8 batches moved and scaled on the device, latent
codes, optimizers from config, one update with its non-finite check and DDP averaging, logging cadence, and the
run config and random states in checkpoints. What a game may add, each in its own module:
``generation.GeneratorGrid`` (it can generate) and ``evaluation.ClassifierEvaluation`` (it has a classifier)."""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ClassVar, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Timer
from torch import nn

from gan_lightning.config_check import Count, Settings, check_arguments
from gan_lightning.errors import ConfigError, TrainingError
from gan_lightning.lightning_compat import logs_this_step
from gan_lightning.models.state import rng_states, set_rng_states
from gan_lightning.plan import DataPlan, declare
from gan_lightning.strategies import average_gradients

RANGES = {"tanh": (-1.0, 1.0), "unit": (0.0, 1.0)}


class Optimizers(dict):
    """A game's optimizers by the names it gives them (``OPTIMIZERS``): ``opt.d``, ``opt.g``, ``opt.c``, ..."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no optimizer named {name!r}; this game's are {list(self)}") from None


class GameModule(L.LightningModule):
    """Base LightningModule of the games (manual optimization: each game runs its own D/G/C steps).

    Args:
        data_range: ``tanh`` scales images to [-1, 1], ``unit`` to [0, 1] (the generator's output range).
        latent_dist: ``normal`` N(0, 1) or ``uniform`` U(0, 1) latent codes.
        channels_last: keep conv weights and image batches in NHWC memory layout (faster convolutions on
            CPU and on tensor cores; the results are the same up to float rounding).
        batch_sizes: the batch size of each stream the game reads (``STREAMS``), e.g. ``{real: 64}``.
        pretrain_batch_sizes: those of its pre-training's streams (``PRETRAIN_STREAMS``), for a game that has one.
        epoch_length: iterations per epoch, or the stream whose pass over its source is one; null: ``EPOCH_LENGTH``.
        epochs: epochs of the game (after any pre-training): the trainer's ``max_epochs`` follows from them.

    A game declares in its class what it draws from the data: ``STREAMS`` (the names ``training_step`` reads and
    their source, ``train`` or ``labeled``), ``PRETRAIN_STREAMS`` and ``EPOCH_LENGTH`` (see ``gan_lightning.plan``);
    ``OPTIMIZERS``, the names of its optimizers in the order of ``configure_optimizers`` (``optimized()`` gives the
    network each one updates); ``MONITOR``, the metric its best checkpoint is chosen by (None: the latest);
    ``saved_states()``, the parts whose state its checkpoints hold besides the networks (e.g. a schedule).
    """

    STREAMS: ClassVar[dict[str, str]] = {}
    PRETRAIN_STREAMS: ClassVar[dict[str, str] | None] = None
    EPOCH_LENGTH: ClassVar[int | str] = 1
    OPTIMIZERS: ClassVar[tuple[str, ...]] = ()
    MONITOR: ClassVar[str | None] = None
    VALIDATES: ClassVar[bool] = False  # evaluates a classifier: the datamodule holds out data.val_size training images

    def __init__(
        self,
        data_range: Literal["tanh", "unit"] = "tanh",
        latent_dist: Literal["normal", "uniform"] = "normal",
        channels_last: bool = True,
        batch_sizes: Mapping[str, int] | None = None,
        pretrain_batch_sizes: Mapping[str, int] | None = None,
        epoch_length: int | str | None = None,
        epochs: Count = 100,
    ) -> None:
        super().__init__()
        check_arguments(GameModule.__init__, locals(), "model")
        if isinstance(epochs, bool) or not isinstance(epochs, int):
            raise ConfigError(f"model.epochs={epochs!r}: expects an integer >= 0")
        # what the game draws from the data (None when built without batch sizes: it can evaluate, not train)
        self.plan: DataPlan | None = None
        if batch_sizes is not None:
            length = self.EPOCH_LENGTH if epoch_length is None else epoch_length
            pretrain = self.PRETRAIN_STREAMS is not None and pretrain_batch_sizes is not None
            self.plan = DataPlan(
                declare(self.STREAMS, batch_sizes, length, "model.batch_sizes"),
                pretrain=declare(
                    self.PRETRAIN_STREAMS or {}, pretrain_batch_sizes, self.EPOCH_LENGTH, "model.pretrain_batch_sizes"
                )
                if pretrain
                else None,
                validates=self.VALIDATES,
            )
        self.automatic_optimization = False
        self.data_range, self.latent_dist, self.channels_last = data_range, latent_dist, bool(channels_last)
        self.run_config: dict | None = None
        # steps without Lightning's hooks and host reads: inside a CUDA graph, or in a loop without a trainer; such
        # steps' (optimizer, network, loss), for ``acceleration.IterationRecorder`` to count and check
        self.bare_steps = False
        self.bare_stepped: list[Any] | None = None
        # the latest step's progress-bar values {name: loss}, for the progress bar (``log_step_scalars``)
        self.bar_values: dict[str, torch.Tensor] = {}

    def setup(self, stage: str) -> None:
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def time_share_clock(self) -> Callable[[], float] | None:
        """A function giving the share of ``trainer.max_time`` spent so far (this process's clock; under DDP the game
        takes rank 0's decisions); None without a time limit."""
        trainer = self._trainer
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None) if trainer is not None else None
        if timer is None:
            return None

        def share() -> float:
            elapsed, left = timer.time_elapsed("train"), timer.time_remaining("train")
            return elapsed / max(elapsed + (left or 0.0), 1e-9)

        return share

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
    def set_optimizer_factories(self, factories: Mapping[str, Callable], key: str = "model.optimizers") -> None:
        """Keep the optimizer factories by name (outside the hparams, so checkpoints load with weights_only) after
        checking their names against ``OPTIMIZERS`` and their learning rates: one line before anything runs."""
        if set(factories) != set(self.OPTIMIZERS):
            raise ConfigError(f"{key} names {sorted(factories)}; this game has the optimizers {list(self.OPTIMIZERS)}")
        for name, factory in factories.items():
            lr = getattr(factory, "keywords", {}).get("lr")
            if lr is not None and not float(lr) > 0:
                raise ConfigError(
                    f"{key}.{name}.lr={lr} must be positive"
                    if len(factories) > 1
                    else f"{key}.lr={lr} must be positive"
                )
        self.optimizer_factories = dict(factories)

    def build_optimizer(self, name: str) -> torch.optim.Optimizer:
        """Optimizer ``name`` of its network's trainable parameters (``OPTIMIZERS``), in the network's own groups if it
        has them (e.g. a fine-tuned backbone with its own learning rate: ``parameter_groups()``)."""
        module = self.optimized()[name]
        if callable(getattr(module, "parameter_groups", None)):
            return self.optimizer_factories[name](params=module.parameter_groups())
        return self.optimizer_factories[name](params=[p for p in module.parameters() if p.requires_grad])

    def optimized(self) -> dict[str, nn.Module]:
        """The network each optimizer updates, by the optimizer's name (``OPTIMIZERS``)."""
        raise NotImplementedError(f"{type(self).__name__} names the network of each of its optimizers in optimized()")

    def saved_states(self) -> dict[str, Any]:
        """Parts with a state of their own (``state_dict``, ``load_state_dict``) that checkpoints hold, by key."""
        return {}

    def configure_optimizers(self):
        optimizers = [self.build_optimizer(name) for name in self.OPTIMIZERS]
        schedulers = self.lr_schedulers_of(Optimizers(zip(self.OPTIMIZERS, optimizers)))
        return (optimizers, schedulers) if schedulers else optimizers

    def lr_schedulers_of(self, opt: Optimizers) -> list[dict]:
        """Learning-rate schedulers of the game's optimizers (Lightning's scheduler dicts); none by default."""
        return []

    @property
    def opt(self) -> Optimizers:
        """The trainer's optimizers by name (``opt.d``, ``opt.g``, ...)."""
        optimizers = self.optimizers()
        return Optimizers(zip(self.OPTIMIZERS, optimizers if isinstance(optimizers, list) else [optimizers]))

    def bare_optimizers(self) -> Optimizers:
        """The game's optimizers as ``configure_optimizers`` builds them, without a trainer or schedulers (for a loop
        that calls ``iteration`` itself)."""
        return Optimizers((name, self.build_optimizer(name)) for name in self.OPTIMIZERS)

    def step(self, opt, loss: torch.Tensor, net: str) -> None:
        """One update of ``net`` (the network that owns ``opt``); stops training if its loss is not finite.
        The check reads the loss back from the device, so on accelerators it runs every ``log_every_n_steps``
        steps only (a host-device sync per step costs GPU runs much of their speed). With ``bare_steps`` the
        update is the optimizer's own, and the caller checks the losses (``check_finite``)."""
        if self.bare_steps:
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if self.bare_stepped is not None:  # an IterationRecorder notes what this kind of iteration steps
                self.bare_stepped.append((opt, net, loss))
            return
        self.check_finite({net: loss})
        opt.zero_grad(set_to_none=True)
        self.manual_backward(loss)
        average_gradients([p for group in opt.param_groups for p in group["params"]])  # trainer=ddp: this network only
        opt.step()

    def logging_step(self) -> bool:
        """Whether this batch's step scalars reach the logger (every ``log_every_n_steps`` batches). Only then are
        they handed to Lightning: its per-call bookkeeping (~1 ms per ``self.log`` on a CPU) costs more than the values
        are worth on the other batches, whose step scalars no logger writes (MLP GAN on a CPU: ~10 % of the step; a
        fast GPU step: more than the step itself)."""
        return self._trainer is None or logs_this_step(self.trainer)

    def log_step_scalars(self, scalars: Mapping[str, torch.Tensor], shown: str, bar: str) -> None:
        """Log this batch's step scalars on logging steps (``logging_step``), with ``scalars[shown]`` on the progress
        bar as ``bar`` (not to the logger). Every batch's value is also kept in ``bar_values``, which the run's progress
        bar (``callbacks.RunProgressBar``) shows after every batch on a CPU, without Lightning's logging. One bar name
        per network, whatever the phase, so the bar never shows a stale value of an earlier phase."""
        logging = self.logging_step()
        if logging:
            self.log_dict(dict(scalars))
        if shown in scalars:
            self.bar_values = {bar: scalars[shown]}
            if logging:
                self.log(bar, scalars[shown], prog_bar=True, logger=False)

    def check_finite(self, losses: Mapping[str, torch.Tensor]) -> None:
        """Stop training if a loss ``{network name: loss}`` is not finite; it reads the losses back from the
        device, so on accelerators only every ``log_every_n_steps`` steps."""
        every = (
            1 if self._trainer is None or self.device.type == "cpu" else max(1, self.trainer.log_every_n_steps)
        )  # 0: no logging
        if self.global_step % every:
            return
        values = torch.stack([v.detach().float() for v in losses.values()]).tolist()
        for (net, _), value in zip(losses.items(), values):
            if not np.isfinite(value):
                raise TrainingError(
                    f"the {net} loss is {value} at global step {self.global_step} (epoch {self.current_epoch}); "
                    "training stopped, the last good checkpoint is kept (try a lower learning rate)"
                )

    @staticmethod
    @contextmanager
    def training_only(opt, optimizers: Mapping[str, Any]) -> Iterator[None]:
        """Inside the block only ``opt``'s parameters require gradients (Lightning's ``toggle_optimizer``, also
        without a trainer): a backward pass through another network computes no gradients for its weights."""
        state = {p: p.requires_grad for o in optimizers.values() for g in o.param_groups for p in g["params"]}
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
    def save_settings(self, **groups: Settings) -> None:
        """The hparams: every argument of the game's constructor but its networks, optimizer factories and groups of
        settings, which are saved as their plain values (modules left out: checkpoints load with weights_only)."""
        frame = inspect.currentframe()
        networks = ["classifier", "generator", "discriminator"]
        self.save_hyperparameters(ignore=[*networks, "optimizers", *groups], frame=frame.f_back if frame else None)
        plain = {
            name: {k: v for k, v in g.settings().items() if not isinstance(v, nn.Module)} for name, g in groups.items()
        }
        self.save_hyperparameters(plain)

    def named_scalars(
        self, prefix: str, terms: Mapping[str, torch.Tensor], total: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Step scalars of one network's loss: each term ``<net>_<name>`` as ``<prefix>/<name>``, the total as
        ``<prefix>/loss``."""
        named = {f"{prefix}/{k.split('_', 1)[1]}": v.detach() for k, v in terms.items()}
        return {**named, f"{prefix}/loss": total.detach()}

    def step_lr_schedulers(self) -> None:
        """Step the game's epoch-wise learning-rate schedulers (manual optimization leaves it to the game)."""
        schedulers = self.lr_schedulers()
        with warnings.catch_warnings():  # during a pre-training the game's optimizers have not stepped yet
            warnings.filterwarnings("ignore", message=".*lr_scheduler.step.*")
            for scheduler in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
                scheduler.step()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self.run_config is not None:
            checkpoint["run_config"] = self.run_config
        checkpoint["rng_states"] = rng_states()
        for key, part in self.saved_states().items():
            checkpoint[key] = part.state_dict()
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
        self.load_saved_states(checkpoint)

    def load_saved_states(self, checkpoint: dict) -> None:
        """The states of ``saved_states`` as the checkpoint holds them (e.g. when the schedule ended pre-training)."""
        for key, part in self.saved_states().items():
            part.load_state_dict(checkpoint.get(key, {}))
