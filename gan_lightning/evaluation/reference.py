"""The reference feature network of a dataset: a classifier trained by ``task=reference`` on every labeled
training example. Its penultimate layer is the feature space of FID and KID, its logits feed the Inception
Score and the conditional accuracy of generators. Nothing is downloaded."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gan_lightning.capabilities import Embeds
from gan_lightning.errors import ConfigError
from gan_lightning.safe_build import build_stored

FORMAT = "gan_lightning.reference/1"


def reference_path(reference_dir: str | Path, dataset: str) -> Path:
    """Where ``task=reference`` writes, and the metrics look for, the reference network of ``dataset``."""
    return Path(reference_dir) / f"{dataset}.pt"


class ReferenceNet(nn.Module):
    """A trained classifier in eval mode, frozen. Input: images in [0, 1], ``(N, C, H, W)``.
    ``forward`` gives class logits, ``embed`` the penultimate features; ``features_and_logits`` both from one pass."""

    def __init__(self, network: nn.Module, dataset: str, test_acc: float) -> None:
        super().__init__()
        if not isinstance(network, Embeds):
            raise ConfigError(f"{type(network).__name__} cannot be a reference network: it needs embed() and head")
        self.network = network.eval().requires_grad_(False)
        self.dataset, self.test_acc = dataset, float(test_acc)
        self.num_classes = int(network.head.out_features)
        self.num_features = int(network.head.in_features)

    def train(self, mode: bool = True) -> ReferenceNet:  # always evaluated with its running BN statistics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.embed(x)

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.network.embed(x)
        return f, self.network.head(f)


def save_reference(
    path: str | Path, network_cfg: dict, network: nn.Module, dataset: str, test_acc: float, image_shape
) -> Path:
    """Write the network's config, weights and test accuracy (atomically: a partial file never replaces a good one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "dataset": dataset,
        "test_acc": float(test_acc),
        "image_shape": list(image_shape),
        "network": network_cfg,
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def load_reference(path: str | Path, dataset: str | None = None) -> ReferenceNet:
    """Load a reference network; one-line ConfigError when it is missing, unreadable or made for another dataset."""
    path = Path(path)
    if not path.is_file():
        hint = (
            " (make it: python -m gan_lightning task=reference "
            f"data={dataset.lower().replace('fashionmnist', 'fashion_mnist')})"
            if dataset
            else ""
        )
        raise ConfigError(f"no reference network at {path}{hint}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"{path} is not a readable reference network ({type(err).__name__})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a reference network written by task=reference")
    if dataset is not None and payload["dataset"] != dataset:
        raise ConfigError(f"{path} is the reference network of {payload['dataset']}, not of {dataset}")
    if not isinstance(payload.get("network"), dict):
        raise ConfigError(f"{path} is not a reference network written by task=reference (no network config)")
    network = build_stored(payload["network"], str(path), "network")
    network.load_state_dict(payload["state_dict"])
    return ReferenceNet(network, payload["dataset"], payload["test_acc"])
