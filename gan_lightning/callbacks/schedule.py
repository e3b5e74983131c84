"""One line with the run's schedule before training, and the estimated total time measured from the first batches."""

from __future__ import annotations

import time

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, Timer
from lightning.pytorch.utilities import rank_zero_info

from gan_lightning.capabilities import HasPhases
from gan_lightning.lightning_compat import batches_completed


def _hms(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class ScheduleEstimate(L.Callback):
    """Prints ``schedule: ...`` (phases, epochs, iterations, the time limit) when training starts, then after
    ``measure_batches`` batches of each phase the measured speed and the estimated time of the whole run."""

    def __init__(self, measure_batches: int = 20, warmup_batches: int = 3) -> None:
        self.measure_batches, self.warmup_batches = int(measure_batches), int(warmup_batches)

    def _per_epoch(self, trainer: L.Trainer, pretraining: bool) -> int:
        dm = trainer.datamodule
        n = (
            dm.iterations_per_epoch(pretraining)
            if hasattr(dm, "iterations_per_epoch")
            else int(trainer.num_training_batches)
        )
        limit = trainer.limit_train_batches
        if isinstance(limit, int):
            return min(n, limit)
        return max(1, int(n * float(limit))) if limit is not None else n

    def _phases(self, trainer: L.Trainer, module: L.LightningModule) -> list[tuple[str, int, int]]:
        """(name, epochs, iterations per epoch) of the phases still ahead, from the current epoch on."""
        epoch, last = trainer.current_epoch, int(trainer.max_epochs or 0)
        pre_end = module.schedule.pretrain_end if isinstance(module, HasPhases) else 0
        phases = []
        if epoch < pre_end:
            phases.append(("pre-training", min(pre_end, last) - epoch, self._per_epoch(trainer, True)))
        game_epochs = last - max(epoch, pre_end)
        if game_epochs > 0:
            phases.append(("training" if not pre_end else "game", game_epochs, self._per_epoch(trainer, False)))
        return phases

    def _limit(self, trainer: L.Trainer) -> float | None:
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        return None if timer is None else timer.time_remaining("train")

    def time_left(self, trainer: L.Trainer, pl_module: L.LightningModule, capped: bool = True) -> tuple[float, int]:
        """(seconds, iterations) left in the whole run at the speed measured in the current phase (``capped``: no
        more than ``trainer.max_time`` leaves)."""
        phases = self._phases(trainer, pl_module)
        done_in_epoch = batches_completed(trainer)
        left = max(0, sum(epochs * per for _, epochs, per in phases) - done_in_epoch)
        seconds = left / max(getattr(self, "rate", 0.0), 1e-9)
        limit = self._limit(trainer)
        return max(0.0, min(seconds, limit) if capped and limit is not None else seconds), left

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        phases = self._phases(trainer, pl_module)
        parts = [f"{name} {epochs} epochs x {per} iterations" for name, epochs, per in phases]
        total = sum(epochs * per for _, epochs, per in phases)
        share = pl_module.schedule.pretrain_time_share if isinstance(pl_module, HasPhases) else None
        note = f" (pre-training ends earlier, after {share:.0%} of the time limit)" if share is not None else ""
        limit = self._limit(trainer)
        stop = f"; stops after {_hms(limit)} (trainer.max_time)" if limit is not None else ""
        rank_zero_info(f"schedule: {' + '.join(parts) or 'nothing to do'} = {total:,} iterations{note}{stop}")
        self.phase: str | None = None
        self.count, self.t0, self.reported = 0, time.time(), False

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        if isinstance(pl_module, HasPhases):
            phase = "pre-training" if pl_module.schedule.in_pretraining(trainer.current_epoch) else "game"
        else:
            phase = "training"
        if phase != self.phase:
            self.phase, self.count, self.reported = phase, 0, False
        self.count += 1
        if self.count == self.warmup_batches:
            self.t0 = time.time()
        if self.count > self.warmup_batches:
            self.rate = (self.count - self.warmup_batches) / max(time.time() - self.t0, 1e-9)
        if self.reported or self.count != self.warmup_batches + self.measure_batches:
            return
        self.reported = True
        estimate, left = self.time_left(trainer, pl_module, capped=False)
        rate = self.rate
        limit = self._limit(trainer)
        capped = f"; trainer.max_time stops it in {_hms(limit)}" if limit is not None and limit < estimate else ""
        rank_zero_info(
            f"{phase}: {rate:.2f} it/s; the rest of the run ({left:,} iterations) "
            f"would take {_hms(estimate)} at this speed{capped}"
        )


class RunProgressBar(RichProgressBar):
    """Lightning's rich progress bar, with the time left for the whole run (all phases and epochs, capped by
    ``trainer.max_time``) next to the epoch's, once ``ScheduleEstimate`` has measured the speed. On a CPU the game's
    latest losses (its ``bar_values``) are shown after every batch; they go through Lightning's logging only on
    logging steps (``GameModule.log_step_scalars``). On an accelerator reading them back would stop the device
    from running ahead, so there the bar shows the values of the last logging step."""

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict:
        items = super().get_metrics(trainer, pl_module)
        if pl_module.device.type == "cpu":
            items.update({name: float(value) for name, value in getattr(pl_module, "bar_values", {}).items()})
        estimate = next((c for c in trainer.callbacks if isinstance(c, ScheduleEstimate)), None)
        if estimate is not None and getattr(estimate, "rate", 0.0) > 0:
            items["run left"] = _hms(estimate.time_left(trainer, pl_module)[0])
        return items
