"""The speed options change how a step is computed, not what it computes: losses on the same seed match the
plain path (NCHW layout, eager mode) up to float rounding."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from gan_lightning.tasks.train import build

from conftest import compose_cfg, needs_mnist

pytestmark = needs_mnist


class _Losses(L.Callback):
    def __init__(self, keys) -> None:
        self.keys, self.values = keys, []

    def on_train_batch_end(self, trainer, *args) -> None:
        self.values.append([float(trainer.callback_metrics[k]) for k in self.keys])


def _losses(overrides: list[str], keys: list[str], tmp_path) -> torch.Tensor:
    cfg = compose_cfg(["trainer=debug", "trainer.max_epochs=1", "trainer.log_every_n_steps=1", "logger=none",
                       "callbacks=none", *overrides], output_dir=tmp_path)
    datamodule, model, trainer = build(cfg)
    record = _Losses(keys)
    trainer.callbacks.append(record)
    trainer.fit(model, datamodule=datamodule)
    return torch.tensor(record.values)


@pytest.mark.parametrize("model,keys", [
    (["model=dcgan"], ["train/d/loss", "train/g/loss"]),
    # C's dropout masks are drawn in memory order, so NHWC and NCHW draw different masks: dropout off here
    (["model=triple_gan", "model.pretrain_epochs=0", "data.streams.d_unlabeled.batch_size=40", "model.classifier.dropout=0"],
     ["train/d/loss", "train/g/loss", "train/c/loss"]),
])
def test_channels_last_gives_the_losses_of_the_plain_layout(model, keys, tmp_path):
    fast = _losses(model + ["model.channels_last=true"], keys, tmp_path / "a")
    plain = _losses(model + ["model.channels_last=false"], keys, tmp_path / "b")
    assert fast.shape == (4, len(keys))
    torch.testing.assert_close(fast, plain, rtol=1e-4, atol=1e-5)


def test_torch_compile_gives_the_losses_of_eager_mode(tmp_path, monkeypatch):
    import torch._inductor.config as inductor_config

    monkeypatch.setattr(inductor_config, "fallback_random", True)  # compiled random ops draw from the eager RNG
    keys = ["train/d/loss", "train/g/loss"]
    compiled = _losses(["model=gan", "trainer.compile=true"], keys, tmp_path / "a")
    eager = _losses(["model=gan", "trainer.compile=false"], keys, tmp_path / "b")
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-5)
