"""Metrics that join the generator metrics by name (``extra``): built on the reference features, given the real images
once, and refused in one line when they compare nothing. On the shipped MNIST reference network (no training run)."""

from __future__ import annotations

import functools

import pytest
import torch
from conftest import ROOT, needs_mnist
from torchmetrics import MeanMetric
from torchmetrics.image.mifid import MemorizationInformedFrechetInceptionDistance as MiFID

from gan_lightning.callbacks import GeneratorEvaluation
from gan_lightning.data import MNISTDataModule
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GeneratorMetrics, load_reference

pytestmark = needs_mnist


@pytest.fixture(scope="module")
def reference():
    return load_reference(ROOT / "gan_lightning" / "references" / "MNIST.pt", "MNIST")


@pytest.fixture(scope="module")
def mnist_test(data_root):
    dm = MNISTDataModule(data_dir=str(data_root), image_shape=(1, 28, 28), num_classes=10, index_file=None)
    dm.setup("fit")
    return dm.splits.test_x, dm.splits.test_y


def test_an_extra_metric_gets_the_reference_features_and_the_real_images_once(reference, mnist_test):
    x, y = mnist_test
    # a config node (built as a partial, as from a command line) and a partial (from Python)
    extra = {
        "fid_again": {"_target_": "torchmetrics.image.fid.FrechetInceptionDistance"},
        "mifid": functools.partial(MiFID),
    }
    metrics = GeneratorMetrics(reference, x[:2000], y[:2000], n_samples=2000, per_class=False, extra=extra)
    first = metrics.evaluate_images(x[4000:6000].float() / 255.0, None)
    assert first["fid_again"] == pytest.approx(first["fid"], rel=1e-6)  # the same features, the same real images
    assert first["mifid"] >= first["fid"] * 0.999  # MiFID scales FID up, never down
    noise = metrics.evaluate_images(torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)), None)
    assert noise["fid_again"] == pytest.approx(noise["fid"], rel=1e-6)  # real features kept across evaluations
    assert noise["fid_again"] > 20 * first["fid_again"]


@pytest.mark.parametrize(
    "factory,message",
    [
        (
            functools.partial(MeanMetric),
            r"extra.m: MeanMetric does not compare real and generated images \(its constructor takes no feature=\)",
        ),
        ({"_target_": "torchmetrics.MeanMetric"}, r"extra.m: MeanMetric does not compare real and generated images"),
        ({"_target_": "torchmetrics.NoSuchMetric"}, r"extra.m._target_=torchmetrics.NoSuchMetric: no such class"),
        ({"feature": 3}, r"extra.m: give the metric's class as _target_"),
        (len, r"extra.m: <built-in function len> is not a torchmetrics Metric class"),
    ],
)
def test_an_extra_metric_that_compares_nothing_is_refused_when_built(reference, mnist_test, factory, message):
    x, y = mnist_test
    with pytest.raises(ConfigError, match=message):
        GeneratorMetrics(reference, x[:100], y[:100], n_samples=100, extra={"m": factory})
    with pytest.raises(ConfigError, match="callbacks.generator_metrics." + message):
        GeneratorEvaluation(extra={"m": factory})
