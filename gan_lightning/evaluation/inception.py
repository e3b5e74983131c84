"""FID, KID and IS in the Inception-v3 features the literature uses (the TensorFlow FID network, as ported by
torch-fidelity and read by torchmetrics), from weights the user provides: nothing is downloaded.

Get the weights once, on a machine with internet (a 91 MB file, the one torch-fidelity itself downloads):

    wget https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth

then ``task=evaluate task.inception_weights=/path/to/weights-inception-2015-12-05-6726825d.pth`` (or put it in
``$GAN_LIGHTNING_INCEPTION``). Grey images are repeated to three channels; torch-fidelity resizes to 299 x 299.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
from torch import nn

from gan_lightning.errors import ConfigError

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"


def check_weights(path: str | Path) -> Path:
    """The weights file, or one line: missing, unreadable as plain tensors (it would run code), or not Inception-v3."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"task.inception_weights={path} does not exist; get {INCEPTION_URL} (docs/metrics.md)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            state = torch.load(
                path, map_location="cpu", weights_only=True
            )  # refuses anything but tensors and containers
    except Exception as err:  # noqa: BLE001 - any failure to read means the same to the user
        raise ConfigError(f"task.inception_weights={path} is not a plain weights file ({type(err).__name__})") from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise ConfigError(f"task.inception_weights={path} is not the FID Inception-v3 ({INCEPTION_FILE})")
    return path


class InceptionFeatures(nn.Module):
    """The FID Inception-v3 (torchmetrics' port of torch-fidelity's) from a weights file, one output (``2048``: pool
    features, ``logits_unbiased``: the IS logits); inputs: floats in [0, 1], grey or RGB (or uint8 RGB)."""

    def __init__(self, weights: str, output: str) -> None:
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.net = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=[output], feature_extractor_weights_path=weights
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype != torch.uint8:
            x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
        return self.net(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


class InceptionMetrics(nn.Module):
    """torchmetrics' FID, KID and IS on the FID Inception-v3 of ``weights`` (checked by ``check_weights``)."""

    def __init__(self, weights: str | Path, kid_subset_size: int = 1000) -> None:
        super().__init__()
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.inception import InceptionScore
        from torchmetrics.image.kid import KernelInceptionDistance

        path = str(check_weights(weights))
        pool, logits = InceptionFeatures(path, "2048"), InceptionFeatures(path, "logits_unbiased")
        local = {"sync_on_compute": False}
        self.fid = FrechetInceptionDistance(feature=pool, reset_real_features=False, **local)
        self.kid = KernelInceptionDistance(
            feature=pool, subset_size=kid_subset_size, reset_real_features=False, **local
        )
        self.inception = InceptionScore(feature=logits, **local)
        self.real_done = False

    @torch.no_grad()
    def add_real(self, batches) -> None:
        for x in batches:
            self.fid.update(x, real=True)
            self.kid.update(x, real=True)
        self.real_done = True

    @torch.no_grad()
    def evaluate(self, batches) -> dict[str, float]:
        for m in (self.fid, self.kid, self.inception):
            m.reset()
        for x in batches:
            self.fid.update(x, real=False)
            self.kid.update(x, real=False)
            self.inception.update(x)
        kid_mean, _ = self.kid.compute()
        is_mean, _ = self.inception.compute()
        return {
            "inception_fid": float(self.fid.compute()),
            "inception_kid_mean": float(kid_mean),
            "inception_is": float(is_mean),
        }
