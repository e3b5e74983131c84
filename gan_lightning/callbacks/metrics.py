"""FID, KID, IS and conditional accuracy of the generator during training (every N epochs and at the end)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info

from gan_lightning.capabilities import CanGenerate, in_pretraining
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GeneratorMetrics, load_reference, reference_path
from gan_lightning.evaluation.generator_metrics import extra_metrics


class GeneratorEvaluation(L.Callback):
    """Logs ``gen/fid``, ``gen/kid_mean``, ``gen/is_mean``, ``gen/cond_acc``, ``gen/fid_class/<k>`` ... computed
    against the test set in the feature space of the dataset's reference network (``task=reference``).

    Args:
        reference_dir: where reference networks live (``<dir>/<dataset>.pt``); ``reference``: an explicit file.
        required: fail before training when the reference network is missing (otherwise the metrics are
            skipped with one message).
        every_n_epochs: evaluate after every N-th epoch, and after the last one.
        n_real: real test images compared with (the first N; null: the whole test set).
        n_samples, kid_subset_size, per_class, batch_size, prdc_samples: see ``GeneratorMetrics`` (``prdc_samples``:
            images for precision, recall, density and coverage; 0: none).
        extra: more metrics, logged as ``gen/<name>``: ``{name: {_target_: a torchmetrics Metric class comparing real
            and generated images as FID does, ...its settings}}`` (``evaluation.extra_metrics``; checked, and built
            as partials, when the callback is built: its config node is not built recursively).
    """

    def __init__(
        self,
        reference_dir: str | None = None,
        reference: str | None = None,
        required: bool = False,
        every_n_epochs: int = 5,
        n_samples: int = 5000,
        n_real: int | None = None,
        kid_subset_size: int = 1000,
        per_class: bool = True,
        batch_size: int = 1000,
        prdc_samples: int = 5000,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        if every_n_epochs <= 0:
            raise ConfigError(f"callbacks.generator_metrics.every_n_epochs={every_n_epochs} must be positive")
        self.extra = extra_metrics(extra, "callbacks.generator_metrics.extra")
        self.reference_dir, self.reference, self.required = reference_dir, reference, bool(required)
        self.every_n_epochs, self.n_samples, self.kid_subset_size = (
            int(every_n_epochs),
            int(n_samples),
            int(kid_subset_size),
        )
        self.per_class, self.batch_size, self.n_real, self.prdc_samples = (
            bool(per_class),
            int(batch_size),
            n_real,
            int(prdc_samples),
        )
        self.metrics: GeneratorMetrics | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit" or not isinstance(pl_module, CanGenerate) or not trainer.is_global_zero:
            return
        dm = trainer.datamodule
        path = self.reference or (reference_path(self.reference_dir, dm.name) if self.reference_dir else None)
        try:
            if path is None:
                raise ConfigError("callbacks.generator_metrics needs reference_dir or reference")
            ref = load_reference(path, dm.name)
        except ConfigError as err:
            if self.required:
                raise
            rank_zero_info(f"generator metrics off: {err}")
            return
        n = len(dm.splits.test_y) if self.n_real is None else int(self.n_real)
        self.metrics = GeneratorMetrics(
            ref,
            dm.splits.test_x[:n],
            dm.splits.test_y[:n],
            n_samples=self.n_samples,
            kid_subset_size=self.kid_subset_size,
            per_class=self.per_class,
            batch_size=self.batch_size,
            prdc_samples=self.prdc_samples,
            extra=self.extra,
        )

    def _evaluate(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict | None:
        """The generator's metrics now, or None without a reference network or while G is untrained (pre-training)."""
        if self.metrics is None or in_pretraining(pl_module, trainer.current_epoch):
            return None
        self.last_step = trainer.global_step
        return self.metrics.to(pl_module.device).evaluate(pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        epoch = trainer.current_epoch + 1
        if trainer.sanity_checking or (epoch % self.every_n_epochs and epoch != trainer.max_epochs):
            return
        values = self._evaluate(trainer, pl_module)
        if values is not None:
            pl_module.log_dict({f"gen/{k}": v for k, v in values.items()}, rank_zero_only=True)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """A run stopped by ``trainer.max_time`` mid-epoch still ends with the metrics of its final generator."""
        if getattr(self, "last_step", None) == trainer.global_step:
            return
        values = self._evaluate(trainer, pl_module)
        if values is None:
            return
        final = {f"gen/{k}": float(v) for k, v in values.items()}
        for logger in trainer.loggers:
            logger.log_metrics(final, step=trainer.global_step)
            logger.save()
        # the run's closing line and the HParams view read the final metrics from here
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in final.items()})
