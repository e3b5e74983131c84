"""Generator metrics, the reference network, and the sample / analyze / evaluate tasks (real MNIST, real CLI runs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from conftest import DATA_ROOT, library_noise, needs_mnist, run_cli
from PIL import Image

from gan_lightning.checkpoints import load_game
from gan_lightning.data import MNISTDataModule
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GeneratorMetrics, analysis, load_reference
from gan_lightning.tbread import read_scalars

pytestmark = [needs_mnist, pytest.mark.slow, pytest.mark.xdist_group("evaluation")]  # CLI runs sharing a reference run


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """A reference network trained by the CLI (150 steps, no averaging, no logger: ~96 % test accuracy)."""
    root = tmp_path_factory.mktemp("reference")
    proc = run_cli(
        [
            "task=reference",
            "model.epochs=1",
            "trainer.limit_train_batches=150",
            "trainer.limit_val_batches=1",
            "model.ema_decay=0.0",
            "logger=none",
            f"task.reference_dir={root / 'refs'}",
        ],
        root / "run",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return root, proc.stdout


@pytest.fixture(scope="session")
def reference(reference_run):
    return load_reference(reference_run[0] / "refs" / "MNIST.pt", "MNIST")


@pytest.fixture(scope="session")
def mnist_test():
    dm = MNISTDataModule(data_dir=str(DATA_ROOT), image_shape=(1, 28, 28), num_classes=10, index_file=None)
    dm.setup("fit")
    return dm.splits.test_x, dm.splits.test_y


@pytest.fixture(scope="session")
def cgan_run(tmp_path_factory, reference_run):
    """A short cGAN run whose generator metrics are computed every epoch against the reference network."""
    run_dir = tmp_path_factory.mktemp("cgan") / "run"
    proc = run_cli(
        [
            "model=cgan",
            "trainer=debug",
            f"paths.reference_dir={reference_run[0] / 'refs'}",
            "callbacks.generator_metrics.required=true",
            "callbacks.generator_metrics.every_n_epochs=1",
            "callbacks.generator_metrics.n_samples=500",
            "callbacks.generator_metrics.n_real=1000",
        ],
        run_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_reference_task_reports_and_saves_its_test_accuracy(reference_run, reference, mnist_test):
    _root, stdout = reference_run
    assert reference.dataset == "MNIST"
    assert reference.num_features == 128
    assert reference.num_classes == 10
    x, y = mnist_test
    with torch.no_grad():
        acc = float((reference(x.float() / 255.0).argmax(1) == y).float().mean())
    assert acc == pytest.approx(reference.test_acc, abs=1e-6)
    assert acc > 0.9
    assert f"test accuracy {100 * acc:.2f}%" in stdout


def test_fid_and_kid_small_for_real_halves_large_for_noise(reference, mnist_test):
    x, y = mnist_test
    metrics = GeneratorMetrics(reference, x[:2000], y[:2000], n_samples=2000, kid_subset_size=500, per_class=False)
    real = metrics.evaluate_images(x[5000:7000].float() / 255.0, None)
    noise = metrics.evaluate_images(torch.rand(2000, 1, 28, 28, generator=torch.Generator().manual_seed(0)), None)
    assert real["fid"] < 0.05 * noise["fid"]
    assert abs(real["kid_mean"]) < 0.05 * noise["kid_mean"]
    assert real["is_mean"] > 5 > noise["is_mean"]  # ten well-separated classes vs. one


def test_fid_matches_a_direct_computation(reference, mnist_test):
    x, y = mnist_test
    a, b = x[:3000].float() / 255.0, x[3000:6000].float() / 255.0
    metrics = GeneratorMetrics(reference, x[:3000], y[:3000], n_samples=3000, kid_subset_size=300, per_class=False)
    fid = metrics.evaluate_images(b, None)["fid"]
    with torch.no_grad():
        fa, fb = reference.embed(a).double(), reference.embed(b).double()
    mu_a, mu_b, cov_a, cov_b = fa.mean(0), fb.mean(0), torch.cov(fa.T), torch.cov(fb.T)
    sqrt_eig = torch.linalg.eigvals(cov_a @ cov_b).real.clamp_min(0).sqrt().sum()
    direct = float((mu_a - mu_b).pow(2).sum() + cov_a.trace() + cov_b.trace() - 2 * sqrt_eig)
    assert fid == pytest.approx(direct, rel=1e-3)


class _RealImageGenerator:
    """A 'generator' that returns real test images of the class it is asked for (or of a shuffled class)."""

    latent_dim, num_classes, is_conditional, device = 4, 10, True, torch.device("cpu")

    def __init__(self, x, y, shuffle: bool) -> None:
        self.by_class = [x[y == k].float() / 255.0 for k in range(10)]
        self.perm = torch.randperm(10, generator=torch.Generator().manual_seed(3)) if shuffle else torch.arange(10)
        self.served = dict.fromkeys(range(10), 0)

    def sample_z(self, n, dim, generator=None, device=None):
        return torch.rand(n, dim, generator=generator)

    def generate(self, z, y):
        out = []
        for k in y.tolist():
            src = int(self.perm[k])
            out.append(self.by_class[src][self.served[src] % len(self.by_class[src])])
            self.served[src] += 1
        return torch.stack(out)


def test_conditional_accuracy_of_real_images_and_of_shuffled_labels(reference, mnist_test):
    x, y = mnist_test
    metrics = GeneratorMetrics(reference, x[:3000], y[:3000], n_samples=1000, kid_subset_size=200)
    right = metrics.evaluate(_RealImageGenerator(x, y, shuffle=False))
    wrong = metrics.evaluate(_RealImageGenerator(x, y, shuffle=True))
    # the first 100 test images of each class: the reference's accuracy on exactly those
    imgs = torch.cat([x[y == k][:100] for k in range(10)]).float() / 255.0
    with torch.no_grad():
        expected = float((reference(imgs).argmax(1) == torch.arange(10).repeat_interleave(100)).float().mean())
    assert right["cond_acc"] == pytest.approx(expected, abs=1e-6)
    assert right["cond_acc"] > 0.9
    assert wrong["cond_acc"] < 0.25  # only classes the permutation keeps in place (and errors) count as right
    assert len([k for k in right if k.startswith("fid_class/")]) == 10
    assert right["fid_class_mean"] < wrong["fid_class_mean"]


def test_metrics_are_logged_during_training(cgan_run):
    scalars = read_scalars(cgan_run / "tb")
    for key in (
        "gen/fid",
        "gen/kid_mean",
        "gen/is_mean",
        "gen/cond_acc",
        "gen/fid_class/9",
        "gen/precision",
        "gen/recall",
        "gen/density",
        "gen/coverage",
    ):
        assert len(scalars[key]) == 2, key  # trainer=debug: 2 epochs, every_n_epochs=1
    assert all(np.isfinite(v) for _, _, v in scalars["gen/fid"])


def test_missing_reference_is_skipped_or_a_clear_error_when_required(tmp_path):
    proc = run_cli(
        [
            "model=gan",
            "trainer=debug",
            f"paths.reference_dir={tmp_path / 'none'}",
            "callbacks.generator_metrics.required=true",
        ],
        tmp_path / "run",
    )
    assert proc.returncode == 2
    assert "no reference network at" in proc.stderr
    assert "task=reference data=mnist" in proc.stderr


def test_sample_task_writes_grids_interpolations_and_npz(cgan_run, tmp_path):
    proc = run_cli(
        [
            "task=sample",
            f"ckpt_path={cgan_run / 'checkpoints' / 'last.ckpt'}",
            "task.npz=50",
            "task.columns=8",
            "task.interpolation_steps=6",
            "task.interpolation_rows=4",
        ],
        tmp_path / "s",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "s"
    side = 28 + 2  # image + padding
    assert Image.open(out / "classes.png").size == (8 * side + 2, 10 * side + 2)  # one row per class
    assert Image.open(out / "interpolation_z.png").size == (6 * side + 2, 4 * side + 2)
    assert Image.open(out / "interpolation_class.png").size == (6 * side + 2, 4 * side + 2)
    assert (out / "random.png").is_file()
    data = np.load(out / "samples.npz")
    assert data["images"].shape == (50, 28, 28, 1)
    assert data["images"].dtype == np.uint8
    assert sorted(set(data["labels"].tolist())) == list(range(10))


def test_evaluate_task_prints_the_table(cgan_run, reference_run, tmp_path):
    proc = run_cli(
        [
            "task=evaluate",
            f"ckpt_path={cgan_run / 'checkpoints' / 'last.ckpt'}",
            "task.n_samples=300",
            "task.kid_subset_size=100",
            "task.n_real=1000",
            f"paths.reference_dir={reference_run[0] / 'refs'}",
            # a metric of torchmetrics joins by name (docs/extending.md)
            "+task.extra.mifid={_target_: torchmetrics.image.mifid.MemorizationInformedFrechetInceptionDistance}",
        ],
        tmp_path / "e",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert library_noise(proc.stdout + proc.stderr) == []  # no library warning or notice on a task's console
    header = "| model | FID | KID x 1e3 | IS | precision | recall | density | coverage | cond. acc | mean class FID |"
    assert f"{header} mifid |" in proc.stdout
    saved = json.loads((tmp_path / "e" / "evaluation.json").read_text())
    ((_name, row),) = saved["metrics"].items()
    assert {"fid", "kid_mean", "is_mean", "cond_acc", "fid_class_mean"} <= set(row)
    assert row["mifid"] >= row["fid"] * 0.999  # MiFID scales FID up, never down
    # a class that compares nothing is refused before anything is built, in one line
    bad = run_cli(
        ["task=evaluate", "ckpt_path=x.ckpt", "+task.extra.mean={_target_: torchmetrics.MeanMetric}"], tmp_path / "b"
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith(
        "error: task.extra.mean: MeanMetric does not compare real and generated images"
    )


def test_analyze_task_on_a_classifier_checkpoint(reference_run, mnist_test, tmp_path):
    ckpt = reference_run[0] / "run" / "checkpoints" / "last.ckpt"
    proc = run_cli(
        ["task=analyze", f"ckpt_path={ckpt}", "task.n_eval=300", "task.viz_steps=20", "task.epsilons=[0.0,0.1,0.3]"],
        tmp_path / "a",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "a"
    for f in ("saliency.png", "fgsm.png", "fgsm_examples.png", "class_visualisation.png", "confusions.png"):
        assert Image.open(out / f).size[0] > 100, f
    rows = list(csv.DictReader((out / "fgsm.csv").open()))
    acc = [float(r["accuracy"]) for r in rows]
    assert [float(r["epsilon"]) for r in rows] == [0.0, 0.1, 0.3]
    assert acc[0] > 0.85
    assert acc[2] < acc[0]
    saved = json.loads((out / "analysis.json").read_text())
    assert saved["accuracy"] == pytest.approx(acc[0])
    # the confusions cover the whole test set: their counts are the network's own mistakes there
    model, _ = load_game(ckpt)
    x, y = mnist_test
    pred = analysis.predict(model.ema.module.eval(), x)
    assert saved["test_error"] == pytest.approx(float((pred != y).float().mean()))
    top = saved["top_confusions"][0]
    assert top["count"] == int(((y == top["true"]) & (pred == top["predicted"])).sum()) > 0
    assert f"true {top['true']} predicted {top['predicted']}: {top['count']} images" in proc.stdout


def test_top_confusions_match_a_hand_count():
    y = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])
    pred = torch.tensor([0, 1, 1, 1, 2, 2, 0, 0, 1, 2])  # errors: 0->1 x2, 1->2 x1, 2->0 x2, 2->1 x1
    top = analysis.top_confusions(pred, y, 3, k=3)
    assert [(c["true"], c["predicted"], c["count"]) for c in top] == [(0, 1, 2), (2, 0, 2), (1, 2, 1)]
    assert top[0]["share_of_errors"] == pytest.approx(2 / 6)
    assert top[0]["share_of_class"] == pytest.approx(2 / 3)
    assert top[1]["share_of_class"] == pytest.approx(2 / 5)
    assert analysis.top_confusions(y, y, 3) == []  # no mistakes, nothing listed


def test_fgsm_moves_each_pixel_by_epsilon_and_lowers_the_true_class_score(reference, mnist_test):
    x, y = mnist_test
    xs, ys = x[:64].float() / 255.0, y[:64]
    adv = analysis.fgsm(reference, xs, ys, 0.1)
    moved = (adv - xs).abs()
    assert moved.max() <= 0.1 + 1e-6
    assert ((moved > 0.099) | (adv == 0) | (adv == 1)).all()
    with torch.no_grad():
        before = torch.nn.functional.cross_entropy(reference(xs), ys)
        after = torch.nn.functional.cross_entropy(reference(adv), ys)
    assert after > before
    sal = analysis.saliency(reference, xs[:4], ys[:4])
    assert sal.shape == (4, 28, 28)
    assert torch.allclose(sal.flatten(1).amax(1), torch.ones(4))


def test_class_visualisation_raises_the_class_probability(reference):
    images, probs = analysis.class_visualisation(reference, (1, 28, 28), 10, steps=30, lr=0.05, l2=1e-2)
    with torch.no_grad():
        start = (
            reference(0.1 * torch.rand(10, 1, 28, 28, generator=torch.Generator().manual_seed(0))).softmax(1).diagonal()
        )
    assert images.shape == (10, 1, 28, 28)
    assert images.min() >= 0
    assert images.max() <= 1
    assert probs.mean() > start.mean()


@pytest.mark.parametrize(
    "args,message",
    [
        (["task=sample"], "ckpt_path is required"),
        (["task=sample", "ckpt_path=CORRUPT"], "is not a readable checkpoint"),
        (["task=analyze", "ckpt_path=CGAN"], "has no classifier to analyse"),
        (["task=sample", "ckpt_path=CGAN", "task.n=0"], "task.n=0 must be positive"),
    ],
)
def test_sample_and_analyze_errors_are_one_line(args, message, cgan_run, tmp_path):
    corrupt = tmp_path / "broken.ckpt"
    corrupt.write_bytes(b"\x80\x04this is not a checkpoint")
    args = [
        a.replace("CORRUPT", str(corrupt)).replace("CGAN", str(cgan_run / "checkpoints" / "last.ckpt")) for a in args
    ]
    proc = run_cli(args, tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert message in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()


def test_reference_of_another_dataset_is_refused(reference_run):
    with pytest.raises(ConfigError, match="reference network of MNIST, not of FashionMNIST"):
        load_reference(reference_run[0] / "refs" / "MNIST.pt", "FashionMNIST")


def _inception_weights(path, monkeypatch):
    """An FID Inception-v3 weights file of the right layout (random weights: no download), as the user's file would
    be."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    monkeypatch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: None)
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state, *a, **k: None)
    net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    monkeypatch.undo()
    for m in net.modules():  # He initialisation: activations keep their scale through the 94 layers
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    torch.save(net.state_dict(), path)
    return path


def test_inception_metrics_from_a_given_weights_file(tmp_path, monkeypatch):
    from gan_lightning.errors import ConfigError
    from gan_lightning.evaluation.inception import InceptionMetrics, check_weights

    weights = _inception_weights(tmp_path / "inception.pth", monkeypatch)
    metrics = InceptionMetrics(weights, kid_subset_size=6)
    gen = torch.Generator().manual_seed(0)
    real = [torch.rand(8, 1, 28, 28, generator=gen)]  # grey images: repeated to three channels
    metrics.add_real(real)
    same = metrics.evaluate(real)
    other = metrics.evaluate([torch.rand(8, 1, 28, 28, generator=gen) * 0.2])
    assert set(same) == {"inception_fid", "inception_kid_mean", "inception_is"}
    assert abs(same["inception_fid"]) < 1e-2 < other["inception_fid"]  # the real images against themselves: ~0
    with pytest.raises(ConfigError, match=r"does not exist; get https://github\.com/toshas/torch-fidelity"):
        check_weights(tmp_path / "missing.pth")
    (tmp_path / "other.pth").write_bytes(b"not a torch file")
    with pytest.raises(ConfigError, match="is not a plain weights file"):
        check_weights(tmp_path / "other.pth")
    torch.save({"w": torch.zeros(1)}, tmp_path / "small.pth")
    with pytest.raises(ConfigError, match="is not the FID Inception-v3"):
        check_weights(tmp_path / "small.pth")
