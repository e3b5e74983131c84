"""Triple-GAN's schedule: when C's pre-training ends, when the game's pseudo-label term R_P starts, how C's adversarial
weights ramp in, how the learning rates anneal and when C's optimizer restarts. Declared once (``model.schedule``),
read by the game (``TripleGAN``), the datamodule (which streams an epoch draws: ``in_pretraining``) and the progress
callbacks, and saved in checkpoints with the decisions taken so far (``state_dict``).

Epochs are Lightning's (0-based, counting pre-training); game epochs count from 1 after pre-training, as in the official
script. Phases by wall time read the share of ``trainer.max_time`` spent so far from a clock the game gives
(``bind``), so a phase takes the same part of the run on a fast and on a slow machine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

from lightning.pytorch.utilities import rank_zero_info

from gan_lightning.config_check import Count, Range, Settings
from gan_lightning.errors import ConfigError

ShareBelowOne = Annotated[float, Range(0, 1, high_open=True)]  # [0, 1)
PositiveShare = Annotated[float, Range(0, 1, low_open=True)]  # (0, 1]
TIME_SHARES = ("pretrain_time_share", "adv_warmup_time_share")


@dataclass
class Schedule(Settings):
    """Args:
    pretrain_epochs: epochs of C's pre-training before the game (at most, with ``pretrain_time_share``).
    pretrain_time_share: pre-training ends after the epoch in which this share of ``trainer.max_time`` has passed.
    pseudo_label_epoch: first game epoch of R_P (Eq. 3 of the paper).
    pseudo_label_trigger: R_P starts earlier, after the first game epoch at whose end the EMA classifier labels at
        least this share of ``trigger_samples`` class-balanced samples of G as their class (``gen/ema_c_acc``).
    trigger_samples: G's samples that measure ``pseudo_label_trigger`` (a multiple of the classes).
    adv_warmup_epochs: C's adversarial and pseudo-label weights ramp linearly from 0 over these game epochs.
    adv_warmup_time_share: the same ramp over this share of ``trainer.max_time`` from the game's first step instead.
    lr_anneal_epoch, lr_anneal_factor: after this game epoch every learning rate is multiplied by the factor each epoch.
    restart_c_optimizer: C's Adam state starts afresh when R_P switches on (the official script compiles a second
        update with its own moments).
    """

    pretrain_epochs: Count = 30
    pretrain_time_share: ShareBelowOne | None = None
    pseudo_label_epoch: int = 300
    pseudo_label_trigger: PositiveShare | None = None
    trigger_samples: Annotated[int, Range(1)] = 1000
    adv_warmup_epochs: Count = 0
    adv_warmup_time_share: PositiveShare | None = None
    lr_anneal_epoch: int = 300
    lr_anneal_factor: Annotated[float, Range(0, low_open=True)] = 0.995
    restart_c_optimizer: bool = True
    # the decisions taken so far, saved in checkpoints: the Lightning epoch the game starts at; R_P's first game epoch
    # when the quality trigger set it; whether C's optimizer has been restarted; the share of trainer.max_time
    # passed at the game's first step
    pretrain_end: int = field(init=False)
    pseudo_start: int | None = field(init=False, default=None)
    c_optimizer_restarted: bool = field(init=False, default=False)
    game_start_share: float | None = field(init=False, default=None)
    clock: Callable[[], float] | None = field(init=False, default=None, repr=False, compare=False)

    PREFIX: ClassVar[str] = "model.schedule"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.pretrain_end = int(self.pretrain_epochs)

    def bind(self, clock: Callable[[], float] | None) -> None:
        """The share of ``trainer.max_time`` spent so far (None: no time limit), for the phases set by wall time."""
        for key in TIME_SHARES:
            if getattr(self, key) is not None and clock is None:
                raise ConfigError(f"model.schedule.{key} needs trainer.max_time (the share is of that time)")
        self.clock = clock

    def _time_share(self) -> float:
        assert self.clock is not None, "bind() refused a time share without trainer.max_time"
        return self.clock()

    # -- where the run is ------------------------------------------------------------------------------
    def in_pretraining(self, epoch: int) -> bool:
        """Whether Lightning epoch ``epoch`` is one of C's pre-training."""
        return epoch < self.pretrain_end

    def game_epoch(self, epoch: int) -> int:
        """1-based game epoch of Lightning epoch ``epoch`` (0 or less during pre-training)."""
        return epoch - self.pretrain_end + 1

    def pseudo_labels_on(self, epoch: int) -> bool:
        """Whether R_P is part of C's loss in Lightning epoch ``epoch``."""
        start = min(self.pseudo_label_epoch, self.pseudo_start or self.pseudo_label_epoch)
        return self.game_epoch(epoch) >= start

    def lr_factor(self, epoch: int) -> float:
        """Learning-rate multiplier of Lightning epoch ``epoch``: 1, then ``factor ** (game epoch - anneal epoch)``."""
        return self.lr_anneal_factor ** max(0, self.game_epoch(epoch) - self.lr_anneal_epoch)

    def adv_ramp(self, epoch: int, epoch_progress: float) -> float:
        """C's adversarial and pseudo-label weight now: 0 -> 1 over ``adv_warmup_time_share`` of the time limit from
        the game's first step, else over ``adv_warmup_epochs`` game epochs (``epoch_progress``: the share of the
        current epoch done)."""
        if self.adv_warmup_time_share is not None:
            now = self._time_share()
            if self.game_start_share is None:
                self.game_start_share = now
            return min(1.0, max(0.0, (now - self.game_start_share) / self.adv_warmup_time_share))
        if self.adv_warmup_epochs == 0:
            return 1.0
        return min(1.0, max(0.0, (self.game_epoch(epoch) - 1 + epoch_progress) / self.adv_warmup_epochs))

    # -- decisions ---------------------------------------------------------------------------------------
    def restart_c_optimizer_now(self, epoch: int) -> bool:
        """True once: at the first step with R_P when ``restart_c_optimizer`` asks for C's fresh Adam moments."""
        if self.restart_c_optimizer and not self.c_optimizer_restarted and self.pseudo_labels_on(epoch):
            self.c_optimizer_restarted = True
            return True
        return False

    def end_pretraining_if_due(self, epoch: int, agree: Callable[[bool], bool] = bool) -> bool:
        """At the end of pre-training epoch ``epoch``: whether ``pretrain_time_share`` has passed, which ends
        pre-training after it (``agree``: every process takes rank 0's answer under DDP)."""
        share = self.pretrain_time_share
        if share is None or not agree(self._time_share() >= share):
            return False
        self.pretrain_end = epoch + 1
        rank_zero_info(f"pre-training ends after epoch {epoch + 1} ({share:.0%} of the time); the game starts")
        return True

    def start_pseudo_labels_if_due(self, epoch: int, ema_c_acc: float) -> bool:
        """At the end of game epoch ``epoch``: whether G's measured quality starts R_P from the next game epoch."""
        if self.pseudo_label_trigger is None or self.pseudo_start is not None or ema_c_acc < self.pseudo_label_trigger:
            return False
        self.pseudo_start = self.game_epoch(epoch) + 1
        rank_zero_info(f"R_P starts at game epoch {self.pseudo_start}: the EMA classifier labels {ema_c_acc:.1%} of "
                       "G's samples as their class")  # fmt: skip
        return True

    # -- checkpoints ---------------------------------------------------------------------------------------
    STATE: ClassVar[tuple[str, ...]] = ("pretrain_end", "pseudo_start", "c_optimizer_restarted", "game_start_share")

    def state_dict(self) -> dict[str, Any]:
        return {key: getattr(self, key) for key in self.STATE}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """The decisions of a saved run (missing ones, from checkpoints written before they existed: none taken)."""
        self.pretrain_end = int(state.get("pretrain_end", self.pretrain_epochs))
        self.pseudo_start = state.get("pseudo_start")
        self.c_optimizer_restarted = bool(state.get("c_optimizer_restarted", False))
        self.game_start_share = state.get("game_start_share")
