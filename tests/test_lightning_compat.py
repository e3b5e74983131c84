"""Each Lightning internal the framework uses (gan_lightning/lightning_compat.py), asked of the installed Lightning
during a real fit: a release that moves or changes one fails here, naming it, instead of deep inside a run."""

from __future__ import annotations

import lightning as L
import torch
from torch import nn

from gan_lightning import lightning_compat as compat


class _Probe(L.LightningModule):
    """Manual optimization, 3 batches an epoch, logging every 2 steps; records what each internal says."""

    def __init__(self) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.net = nn.Linear(2, 1)
        self.seen: list[dict] = []

    def configure_optimizers(self):
        return torch.optim.SGD(self.net.parameters(), lr=0.1)

    def training_step(self, batch, batch_idx):
        opt = self.optimizers()
        loss = self.net(batch[0]).pow(2).mean()
        opt.zero_grad()
        self.manual_backward(loss)
        before = self.trainer.global_step
        opt.optimizer.step()  # the raw step, as a replayed CUDA graph takes it: Lightning does not count it
        raw_counted = self.trainer.global_step - before
        compat.count_optimizer_step(opt)
        self.seen.append({
            "epoch": self.current_epoch, "batch_idx": batch_idx, "raw_counted": raw_counted,
            "global_step": self.trainer.global_step, "logs": compat.logs_this_step(self.trainer),
            "started": compat.batches_started(self.trainer), "completed": compat.batches_completed(self.trainer),
            "total": compat.total_batch_index(self.trainer), "restarting": compat.resuming_mid_epoch(self.trainer),
        })  # fmt: skip


def test_every_lightning_internal_answers_as_the_framework_expects(tmp_path):
    probe = _Probe()
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(6, 2)), batch_size=2)
    trainer = L.Trainer(max_epochs=2, log_every_n_steps=2, logger=L.pytorch.loggers.CSVLogger(tmp_path),
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(probe, data)
    seen = probe.seen
    assert [s["raw_counted"] for s in seen] == [0] * 6  # a raw step is invisible to Lightning...
    assert [s["global_step"] for s in seen] == [1, 2, 3, 4, 5, 6]  # ...until count_optimizer_step counts it
    assert [s["started"] for s in seen] == [1, 2, 3, 1, 2, 3]  # this batch included, per epoch
    assert [s["completed"] for s in seen] == [0, 1, 2, 0, 1, 2]  # before this batch ends, per epoch
    assert [s["total"] for s in seen] == [0, 1, 2, 3, 4, 5]  # over the run
    assert [s["logs"] for s in seen] == [False, True, False, True, False, True]  # every 2nd step (1-based) is logged
    assert not any(s["restarting"] for s in seen)


def test_the_ddp_strategy_keeps_its_hook_for_the_wrapping():
    """``DDPWithoutWrapper`` overrides the hook in which Lightning's DDP wraps the model; if the hook is renamed the
    override would silently stop applying and DDP would wrap the game again."""
    from lightning.pytorch.strategies import DDPStrategy

    assert callable(getattr(DDPStrategy, "_setup_model", None))
    assert "_setup_model" in vars(compat.DDPWithoutWrapper)  # the override is the strategy's own
    assert compat.DDPWithoutWrapper._setup_model is not DDPStrategy._setup_model
    assert callable(compat._sync_module_states)  # what it broadcasts the states with


def test_a_run_resumed_mid_epoch_is_seen_as_restarting(tmp_path):
    """A checkpoint written inside the first epoch: when the resumed run asks for its training batches (where the
    datamodule does), the fit loop says it is restarting and how many of the epoch's batches the saved run had done."""

    class Stop(L.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                self.completed = compat.batches_completed(trainer)  # what the checkpoint records as done
                trainer.save_checkpoint(tmp_path / "mid.ckpt")
                trainer.should_stop = True

    class Loader(_Probe):
        def train_dataloader(self):
            self.asked = (compat.resuming_mid_epoch(self.trainer), compat.batches_completed(self.trainer))
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.randn(6, 2)), batch_size=2)

    options = {"max_epochs": 1, "logger": False, "enable_checkpointing": False, "enable_progress_bar": False,
               "enable_model_summary": False}  # fmt: skip
    first, stop = Loader(), Stop()
    L.Trainer(callbacks=[stop], **options).fit(first)
    assert first.asked == (False, 0)
    assert stop.completed >= 1
    resumed = Loader()
    L.Trainer(**options).fit(resumed, ckpt_path=tmp_path / "mid.ckpt")
    assert resumed.asked == (True, stop.completed)  # restarting, with the saved run's count of done batches
