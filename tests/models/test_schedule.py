"""Triple-GAN's schedule on its own: where a Lightning epoch falls, the warm-up's ramp, the learning-rate annealing,
the decisions it takes (end of pre-training by wall time, R_P by G's quality, C's optimizer restart), its state in
checkpoints, and its ranges."""

from __future__ import annotations

import pytest

from gan_lightning.errors import ConfigError
from gan_lightning.models.schedule import Schedule


def test_epochs_phases_and_annealing():
    s = Schedule(pretrain_epochs=3, pseudo_label_epoch=2, lr_anneal_epoch=2, lr_anneal_factor=0.5)
    assert [s.in_pretraining(e) for e in range(5)] == [True, True, True, False, False]
    assert [s.game_epoch(e) for e in range(5)] == [-2, -1, 0, 1, 2]
    assert [s.pseudo_labels_on(e) for e in range(6)] == [False, False, False, False, True, True]
    assert [s.lr_factor(e) for e in range(7)] == [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.25]


def test_the_warm_up_ramps_over_game_epochs_or_a_share_of_the_time():
    by_epochs = Schedule(pretrain_epochs=1, adv_warmup_epochs=2)
    assert [by_epochs.adv_ramp(e, p) for e, p in ((1, 0.0), (1, 0.5), (2, 0.0), (2, 0.5), (3, 0.0))] == [
        0.0, 0.25, 0.5, 0.75, 1.0,
    ]  # fmt: skip
    assert Schedule(adv_warmup_epochs=0).adv_ramp(40, 0.3) == 1.0
    by_time = Schedule(adv_warmup_time_share=0.5)
    clock = iter([0.2, 0.3, 0.45, 0.9])
    by_time.bind(lambda: next(clock))
    assert [by_time.adv_ramp(0, 0.0) for _ in range(4)] == pytest.approx([0.0, 0.2, 0.5, 1.0])
    assert by_time.game_start_share == pytest.approx(0.2)  # the game's first step, kept for a resumed run


def test_decisions_are_taken_once_and_travel_in_checkpoints():
    s = Schedule(pretrain_epochs=10, pretrain_time_share=0.4, pseudo_label_trigger=0.9, pseudo_label_epoch=50)
    share = iter([0.3, 0.41])
    s.bind(lambda: next(share))
    assert not s.end_pretraining_if_due(0)
    assert s.end_pretraining_if_due(1)  # 41 % of the time: the game starts after Lightning epoch 1
    assert (s.pretrain_end, s.game_epoch(2)) == (2, 1)
    assert not s.start_pseudo_labels_if_due(2, ema_c_acc=0.85)
    assert s.start_pseudo_labels_if_due(3, ema_c_acc=0.92)  # game epoch 2 reached 92 %: R_P from game epoch 3
    assert not s.start_pseudo_labels_if_due(4, ema_c_acc=0.99)  # decided once
    assert [s.pseudo_labels_on(e) for e in (3, 4)] == [False, True]
    assert not s.restart_c_optimizer_now(3)
    assert s.restart_c_optimizer_now(4)
    assert not s.restart_c_optimizer_now(5)  # once
    resumed = Schedule(pretrain_epochs=10, pretrain_time_share=0.4, pseudo_label_trigger=0.9, pseudo_label_epoch=50)
    resumed.load_state_dict(s.state_dict())
    assert resumed.state_dict() == s.state_dict() == {
        "pretrain_end": 2, "pseudo_start": 3, "c_optimizer_restarted": True, "game_start_share": None,
    }  # fmt: skip
    older = Schedule(pretrain_epochs=10)
    older.load_state_dict({})  # a checkpoint written before the schedule took decisions: none taken
    assert (older.pretrain_end, older.pseudo_start, older.c_optimizer_restarted) == (10, None, False)


@pytest.mark.parametrize(
    "settings,message",
    [
        ({"pretrain_epochs": -1}, "model.schedule.pretrain_epochs=-1 must be >= 0"),
        ({"pretrain_time_share": 1.0}, "model.schedule.pretrain_time_share=1.0 must be in [0, 1) or null"),
        ({"adv_warmup_time_share": 0}, "model.schedule.adv_warmup_time_share=0 must be in (0, 1] or null"),
        ({"pseudo_label_trigger": 1.5}, "model.schedule.pseudo_label_trigger=1.5 must be in (0, 1] or null"),
        ({"trigger_samples": 0}, "model.schedule.trigger_samples=0 must be >= 1"),
        ({"lr_anneal_factor": 0.0}, "model.schedule.lr_anneal_factor=0.0 must be > 0"),
    ],
)
def test_ranges_are_one_line(settings, message):
    with pytest.raises(ConfigError) as err:
        Schedule(**settings)
    assert str(err.value) == message


def test_a_share_of_the_time_needs_a_time_limit():
    with pytest.raises(ConfigError, match=r"model\.schedule\.pretrain_time_share needs trainer\.max_time"):
        Schedule(pretrain_time_share=0.4).bind(None)
    Schedule().bind(None)  # nothing by wall time: no clock needed
