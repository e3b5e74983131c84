"""How good is a generator, measured offline: FID, KID and Inception Score (torchmetrics) in the feature space of
the dataset's reference network, and for conditional generators the conditional accuracy (does the reference
net see class y in G(z, y)?) and the FID of each class; plus any metric that compares real and generated images the
way torchmetrics' FID does (``extra``)."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any, cast

import hydra
import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.classification import MulticlassAccuracy
from torchmetrics.image.fid import FrechetInceptionDistance
from torchmetrics.image.inception import InceptionScore
from torchmetrics.image.kid import KernelInceptionDistance

from gan_lightning.config_check import resolve
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation.inception import InceptionMetrics
from gan_lightning.evaluation.prdc import precision_recall_density_coverage
from gan_lightning.evaluation.reference import ReferenceNet


class _SharedPass:
    """Runs the reference network once per batch for every metric that looks at the same batch."""

    def __init__(self, reference: ReferenceNet) -> None:
        self.reference, self._version = reference, -1
        self._last: torch.Tensor | None = None
        self._out: tuple[torch.Tensor, torch.Tensor] = (torch.empty(0), torch.empty(0))

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the last batch is held, so a new batch can never reuse its memory and pass for it
        if self._last is None or x is not self._last or x._version != self._version:
            with torch.no_grad():
                self._out = self.reference.features_and_logits(x)
            self._last, self._version = x, x._version
        return self._out


class ReferenceFeatures(nn.Module):
    """The ``feature=`` module given to torchmetrics: penultimate features (FID, KID) or logits (IS)."""

    def __init__(self, shared: _SharedPass, output: str) -> None:
        super().__init__()
        self.shared, self.index = shared, {"features": 0, "logits": 1}[output]
        ref = shared.reference
        self.num_features = ref.num_features if output == "features" else ref.num_classes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shared(x)[self.index]


def extra_metrics(extra: Mapping[str, Any] | None, key: str) -> dict[str, Callable[..., Metric]]:
    """The ``extra`` metrics by name as factories, checked before anything is built: each a config node
    (``{_target_: <Metric class>, <its settings>}``, built as a partial) or a class or partial of one. Each must be a
    torchmetrics ``Metric`` that compares real and generated images as FID does: built with ``feature=`` (the network
    whose features it compares), ``reset_real_features=`` and the ``Metric`` keywords (``**kwargs``), updated with
    ``update(images, real)``. One line naming the entry otherwise."""
    out = {}
    for name, spec in (extra or {}).items():
        where = f"{key}.{name}"
        if isinstance(spec, Mapping):
            target = spec.get("_target_")
            if not isinstance(target, str):
                raise ConfigError(f"{where}: give the metric's class as _target_ (and its settings beside it)")
            cls = resolve(target)
            if cls is None:
                raise ConfigError(f"{where}._target_={target}: no such class")
            _check_comparing(where, cls)
            out[name] = hydra.utils.instantiate(spec, _partial_=True)
        else:
            _check_comparing(where, spec.func if isinstance(spec, functools.partial) else spec)
            out[name] = spec
    return out


def _check_comparing(where: str, cls: object) -> None:
    allowed = "a torchmetrics Metric class taking feature=, reset_real_features= and **kwargs"
    if not isinstance(cls, type) or not issubclass(cls, Metric):
        raise ConfigError(f"{where}: {cls!r} is not {allowed}")
    params = inspect.signature(cls).parameters
    missing = [f"{p}=" for p in ("feature", "reset_real_features") if p not in params]
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()) and "sync_on_compute" not in params:
        missing.append("**kwargs")
    if missing or "real" not in inspect.signature(cast(type[Metric], cls).update).parameters:
        what = f"its constructor takes no {missing[0]}" if missing else "its update() takes no real="
        raise ConfigError(
            f"{where}: {cls.__name__} does not compare real and generated images ({what}); "
            f"expected {allowed}, and update(images, real)"
        )


class GeneratorMetrics:
    """Evaluate generators against ``real`` images (uint8 ``(N, C, H, W)`` and labels) of one dataset.

    Args:
        reference: the dataset's reference network.
        real_x, real_y: the real images (uint8) and labels, usually the test set; their features are computed
            once and kept for every later evaluation.
        n_samples: generated images per evaluation (class-balanced for conditional generators).
        kid_subset_size: size of KID's random subsets (capped by the sample counts). is_splits: IS splits.
        per_class: FID of each class (conditional generators).
        inception_weights: the FID Inception-v3's weights file: FID, KID and IS in its features too (``inception_*``).
        prdc_samples: real and generated images for precision, recall, density and coverage (k = ``prdc_k``) in the
            reference features (``gan_lightning.evaluation.prdc``); 0: not computed.
        batch_size: images per forward pass. seed: the latent codes are the same at every evaluation.
        extra: more metrics by name (``extra_metrics``: a config node, a class or a partial of one) that compare
            real and generated images as FID does: built here with the reference network's features, given the real
            images once, reported as ``<name>`` (a pair of values: ``<name>``, ``<name>_std``).
    """

    def __init__(
        self,
        reference: ReferenceNet,
        real_x: torch.Tensor,
        real_y: torch.Tensor,
        n_samples: int = 10000,
        kid_subset_size: int = 1000,
        is_splits: int = 10,
        per_class: bool = True,
        batch_size: int = 1000,
        seed: int = 0,
        prdc_samples: int = 5000,
        prdc_k: int = 3,
        inception_weights: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        factories = extra_metrics(extra, "extra")
        if n_samples < 2 * reference.num_classes:
            raise ConfigError(
                f"n_samples={n_samples} is too small: at least 2 per class ({2 * reference.num_classes}) are needed"
            )
        if batch_size <= 0:
            raise ConfigError(f"batch_size={batch_size} must be positive")
        self.reference, self.n_samples, self.batch_size, self.seed = (
            reference,
            int(n_samples),
            int(batch_size),
            int(seed),
        )
        self.num_classes, self.per_class = reference.num_classes, bool(per_class)
        self.real_x, self.real_y = real_x, real_y
        self.shared = _SharedPass(reference)
        feats, logits = ReferenceFeatures(self.shared, "features"), ReferenceFeatures(self.shared, "logits")
        subset = max(2, min(kid_subset_size, self.n_samples, len(real_x)))
        local = {"sync_on_compute": False}  # computed by one process (rank 0 under DDP): never wait for the others
        self.fid = FrechetInceptionDistance(feature=feats, reset_real_features=False, **local)
        self.kid = KernelInceptionDistance(feature=feats, subset_size=subset, reset_real_features=False, **local)
        self.inception = InceptionScore(feature=logits, splits=is_splits, **local)
        self.class_fid = nn.ModuleList(
            FrechetInceptionDistance(feature=feats, reset_real_features=False, **local) for _ in range(self.num_classes)
        )
        self.cond_acc = MulticlassAccuracy(self.num_classes, average="micro", **local)
        self.extra = {
            name: factory(feature=feats, reset_real_features=False, **local) for name, factory in factories.items()
        }
        if prdc_samples < 0 or prdc_k < 1:
            raise ConfigError(f"prdc_samples={prdc_samples} must be >= 0 and prdc_k={prdc_k} >= 1")
        self.prdc_samples, self.prdc_k = int(prdc_samples), int(prdc_k)
        self.real_features: list[torch.Tensor] = []  # the first prdc_samples real images' features
        # the literature's Inception-v3 FID/KID/IS, where the user gives its weights
        # (gan_lightning.evaluation.inception)
        self.inception_net = InceptionMetrics(inception_weights, subset) if inception_weights else None
        self.device = torch.device("cpu")
        self._real_done = False

    def to(self, device) -> GeneratorMetrics:
        self.device = torch.device(device)
        for m in (
            self.reference,
            self.fid,
            self.kid,
            self.inception,
            self.class_fid,
            self.cond_acc,
            self.inception_net,
            *self.extra.values(),
        ):
            if m is not None:
                m.to(self.device)
        return self

    def _batches(self, x: torch.Tensor, y: torch.Tensor):
        for i in range(0, len(x), self.batch_size):
            xb = x[i : i + self.batch_size].to(self.device)
            yield (
                (xb.float() / 255.0 if xb.dtype == torch.uint8 else xb.float()),
                y[i : i + self.batch_size].to(self.device),
            )

    def _add_real(self) -> None:
        kept = 0
        for xb, yb in self._batches(self.real_x, self.real_y):
            for m in (self.fid, self.kid, *self.extra.values()):
                m.update(xb, real=True)
            if kept < self.prdc_samples:
                self.real_features.append(
                    self.shared(xb)[0][: self.prdc_samples - kept].cpu()
                )  # the pass FID just made
                kept += len(self.real_features[-1])
            if self.per_class:
                for k in range(self.num_classes):
                    if (yb == k).any():
                        self.class_fid[k].update(xb[yb == k], real=True)
        self._real_done = True

    def codes(self, latent_dim: int, latent: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The fixed latent codes and class-balanced labels of every evaluation."""
        gen = torch.Generator().manual_seed(self.seed)
        z = latent(self.n_samples, latent_dim, generator=gen, device="cpu")
        y = torch.arange(self.num_classes).repeat(self.n_samples // self.num_classes + 1)[: self.n_samples]
        return z, y

    @torch.no_grad()
    def evaluate_images(self, images: torch.Tensor, labels: torch.Tensor | None) -> dict[str, float]:
        """Metrics of given images in [0, 1] (``labels``: the asked classes, or None for unconditional ones)."""
        if not self._real_done:
            self._add_real()
        for m in (self.fid, self.kid, self.inception, self.cond_acc, *self.class_fid, *self.extra.values()):
            m.reset()
        if labels is None:
            labels = torch.full((len(images),), -1, dtype=torch.long)
        fake_features: list[torch.Tensor] = []
        kept = 0
        for xb, yb in self._batches(images, labels):
            for m in (self.fid, self.kid, *self.extra.values()):
                m.update(xb, real=False)
            self.inception.update(xb)
            if kept < self.prdc_samples:
                fake_features.append(self.shared(xb)[0][: self.prdc_samples - kept].cpu())
                kept += len(fake_features[-1])
            if (yb >= 0).all():
                self.cond_acc.update(self.shared(xb)[1].argmax(1), yb)
                if self.per_class:
                    for k in range(self.num_classes):
                        if (yb == k).any():
                            self.class_fid[k].update(xb[yb == k], real=False)
        kid_mean, kid_std = self.kid.compute()
        is_mean, is_std = self.inception.compute()
        out = {
            "fid": float(self.fid.compute()),
            "kid_mean": float(kid_mean),
            "kid_std": float(kid_std),
            "is_mean": float(is_mean),
            "is_std": float(is_std),
        }
        for name, metric in self.extra.items():
            value = metric.compute()
            if isinstance(value, tuple | list):
                out[name], out[f"{name}_std"] = float(value[0]), float(value[1])
            else:
                out[name] = float(value)
        if self.inception_net is not None:
            if not self.inception_net.real_done:
                self.inception_net.add_real(xb for xb, _ in self._batches(self.real_x, self.real_y))
            out.update(self.inception_net.evaluate(xb for xb, _ in self._batches(images, labels)))
        if self.prdc_samples and fake_features:
            fake = torch.cat(fake_features)  # as many real images as generated ones (coverage and recall depend on it)
            out.update(precision_recall_density_coverage(torch.cat(self.real_features)[: len(fake)], fake, self.prdc_k))
        if (labels >= 0).all():
            out["cond_acc"] = float(self.cond_acc.compute())
            if self.per_class:
                per = [float(m.compute()) for m in self.class_fid]
                out.update({f"fid_class/{k}": v for k, v in enumerate(per)})
                out["fid_class_mean"] = sum(per) / len(per)
        return out

    @torch.no_grad()
    def evaluate(self, model) -> dict[str, float]:
        """Metrics of a game's generator (``model.generate``), on the same latent codes every time."""
        z, y = self.codes(model.latent_dim, model.sample_z)
        conditional = model.is_conditional
        images = torch.cat(
            [
                model.generate(zb.to(model.device), yb.to(model.device) if conditional else None).cpu()
                for zb, yb in zip(z.split(self.batch_size), y.split(self.batch_size))
            ]
        )
        return self.evaluate_images(images, y if conditional else None)


def markdown_table(rows: dict[str, dict[str, float]], extra: Sequence[str] = ()) -> str:
    """``{name: metrics}`` as a Markdown table (FID, KID, IS, precision, recall, density, coverage, conditional
    accuracy, mean per-class FID, then the ``extra`` metrics by name)."""
    cols = [
        ("FID", "fid", "{:.2f}"),
        ("KID x 1e3", "kid_mean", "{:.2f}"),
        ("IS", "is_mean", "{:.2f}"),
        ("precision", "precision", "{:.3f}"),
        ("recall", "recall", "{:.3f}"),
        ("density", "density", "{:.3f}"),
        ("coverage", "coverage", "{:.3f}"),
        ("Inception FID", "inception_fid", "{:.2f}"),
        ("Inception IS", "inception_is", "{:.2f}"),
        ("cond. acc", "cond_acc", "{:.2%}"),
        ("mean class FID", "fid_class_mean", "{:.2f}"),
        *((name, name, "{:.4g}") for name in extra),
    ]
    cols = [c for c in cols if any(c[1] in m for m in rows.values())]  # e.g. the Inception columns only when computed
    lines = ["| model | " + " | ".join(c[0] for c in cols) + " |", "|---|" + "---|" * len(cols)]
    for name, m in rows.items():
        cells = [(fmt.format(m[key] * (1e3 if key == "kid_mean" else 1)) if key in m else "-") for _, key, fmt in cols]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
