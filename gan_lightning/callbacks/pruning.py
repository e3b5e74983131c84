"""Optuna pruning of a sweep's trial: each epoch's validation metric reported, the trial stopped when the pruner
says."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from gan_lightning.errors import ConfigError
from gan_lightning.selection import check_metric

PRUNERS = ("median", "successive_halving", "none")


def make_pruner(name: str, warmup_epochs: int) -> Any:
    import optuna

    if name == "median":  # stop a trial whose metric is worse than the median of the others' at the same epoch
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=warmup_epochs)
    if name == "successive_halving":  # keep the best 1/3 at epochs warmup, 3*warmup, 9*warmup, ...
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, warmup_epochs), reduction_factor=3)
    return optuna.pruners.NopPruner()


class OptunaPruning(L.Callback):
    """Reports ``monitor`` after every validation to the Optuna trial ``trial`` of ``study_name`` in ``storage`` (a
    sweep job; ``trial`` null: not a sweep, nothing happens) and stops the run cleanly when ``pruner`` prunes it.

    Args:
        monitor: a validation metric (``val/*``: the test set chooses nothing).
        pruner: ``median`` (after ``warmup_epochs`` epochs and 2 finished trials), ``successive_halving`` or ``none``.
        storage, study_name: the sweeper's (``hydra.sweeper.storage``: pruning needs one, the jobs report through it).
        trial: the job's trial number, given by the sweeper (``pruning.trial``).
    """

    def __init__(
        self,
        monitor: str = "val/err_ema",
        pruner: str = "median",
        warmup_epochs: int = 3,
        storage: str | None = None,
        study_name: str | None = None,
        trial: int | None = None,
    ) -> None:
        check_metric("callbacks.optuna_pruning.monitor", monitor)
        if pruner not in PRUNERS:
            raise ConfigError(f"callbacks.optuna_pruning.pruner={pruner!r} is not one of {list(PRUNERS)}")
        if trial is not None and storage is None:
            raise ConfigError(
                "callbacks.optuna_pruning needs a study storage to report through: give "
                "hydra.sweeper.storage=sqlite:///<file>.db (or pruner=none)"
            )
        self.monitor, self.pruner, self.warmup_epochs = monitor, pruner, int(warmup_epochs)
        self.storage, self.study_name, self.trial_number = storage, study_name, trial
        self.pruned_at: int | None = None
        self._trial: Any = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if self.trial_number is None or self.pruner == "none" or not trainer.is_global_zero:
            return
        import optuna

        assert self.storage is not None  # __init__ refused a trial without one
        study = optuna.load_study(
            study_name=self.study_name, storage=self.storage, pruner=make_pruner(self.pruner, self.warmup_epochs)
        )
        trial_id = study._storage.get_trial_id_from_study_id_trial_number(study._study_id, self.trial_number)
        self._trial = optuna.trial.Trial(study, trial_id)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._trial is None or trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        epoch = trainer.current_epoch
        self._trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self._trial.should_prune():
            self.pruned_at = epoch
            self._trial.set_user_attr("pruned_at_epoch", epoch)
            trainer.should_stop = True
            rank_zero_info(
                f"pruned by Optuna after epoch {epoch + 1} ({self.monitor}="
                f"{float(trainer.callback_metrics[self.monitor]):.4g}); the run ends here with its checkpoint"
            )
