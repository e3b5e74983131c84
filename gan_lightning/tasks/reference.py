"""``task=reference``: train the dataset's reference feature network on every labeled training example, report
its test accuracy and save it where the generator metrics look for it."""

from __future__ import annotations

import torch
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from gan_lightning.evaluation import reference_path, save_reference
from gan_lightning.tasks.train import fit


@torch.no_grad()
def test_accuracy(network: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000) -> float:
    """Accuracy of ``network`` (eval mode, CPU) on uint8 images ``x`` scaled to [0, 1]."""
    network = network.eval()
    correct = sum(int((network(xb.float() / 255.0).argmax(1) == yb).sum()) for xb, yb in zip(x.split(batch_size), y.split(batch_size)))
    return correct / len(y)


def reference(cfg: DictConfig, reference_dir: str) -> float:
    """Fit ``model=reference`` and save its EMA network as ``<reference_dir>/<dataset>.pt``; returns its test accuracy."""
    datamodule, model, _ = fit(cfg)
    network = model.ema.module.cpu()
    acc = test_accuracy(network, datamodule.splits.test_x, datamodule.splits.test_y)
    _save(reference_path(reference_dir, datamodule.name), model.run_config["model"]["classifier"], network,
          datamodule.name, acc, datamodule.image_shape)
    return acc


@rank_zero_only
def _save(path, network_cfg, network, dataset, acc, image_shape) -> None:
    save_reference(path, network_cfg, network, dataset, acc, image_shape)
    print(f"reference network of {dataset}: test accuracy {acc:.2%}, saved to {path}")
