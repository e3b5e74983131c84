"""``task=reference``: train the dataset's reference feature network on every labeled training example, report
its test accuracy and save it where the generator metrics look for it."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig

from gan_lightning.evaluation import analysis, reference_path, save_reference
from gan_lightning.tasks.train import fit


def reference(cfg: DictConfig, reference_dir: str) -> float:
    """Fit ``model=reference`` and save its EMA network as ``<reference_dir>/<dataset>.pt``; returns its test
    accuracy."""
    datamodule, model, _ = fit(cfg)
    network = model.ema.module.cpu()
    acc = analysis.accuracy(network.eval(), datamodule.splits.test_x, datamodule.splits.test_y)
    _save(
        reference_path(reference_dir, datamodule.name),
        model.run_config["model"]["classifier"],
        network,
        datamodule.name,
        acc,
        datamodule.image_shape,
    )
    return acc


@rank_zero_only
def _save(path, network_cfg, network, dataset, acc, image_shape) -> None:
    save_reference(path, network_cfg, network, dataset, acc, image_shape)
    print(f"reference network of {dataset}: test accuracy {acc:.2%}, saved to {path}")
