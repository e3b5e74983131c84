"""Transfer learning: frozen backbones stay frozen, the head learns, local weights load, an offline download is one
line."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch
from conftest import compose_cfg, run_cli
from hydra.utils import instantiate

from gan_lightning.checkpoints import load_game
from gan_lightning.errors import ConfigError
from gan_lightning.nets.backbones import FinetuneNet

REFERENCE = "gan_lightning/references/MNIST.pt"


def _folder(root, n=12):
    from PIL import Image

    rng = np.random.default_rng(0)
    for k, name in enumerate(("dark", "light")):
        (root / name).mkdir(parents=True)
        for i in range(n):
            pixels = rng.integers(0, 120, (20, 20), dtype=np.uint8) + 120 * k
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i}.png")
    return root


def test_frozen_backbone_stays_and_the_head_learns_on_an_image_folder(tmp_path):
    _folder(tmp_path / "shades")
    cfg = compose_cfg(
        [
            "model=finetune",
            "data=image_folder",
            f"data.folder={tmp_path / 'shades'}",
            "data.image_shape=[1,28,28]",
            "data.num_classes=2",
            "model.classifier.backbone=reference",
            f"model.classifier.weights={REFERENCE}",
            "model.batch_sizes.labeled=8",
            "model.optimizer.lr=0.05",
        ]
    )
    L.seed_everything(0)
    model, dm = instantiate(cfg.model, _convert_="all"), instantiate(cfg.data, _convert_="all")
    dm.serve(model)
    dm.setup()
    frozen = {k: v.clone() for k, v in model.classifier.features.state_dict().items()}
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=6,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    after = model.classifier.features.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)  # weights and BN statistics untouched
    x, y = dm.splits.test_x.float() / 255, dm.splits.test_y
    model.classifier.eval()
    assert (model.classifier(x).argmax(1) == y).float().mean() == 1.0  # the head separates dark from light


def test_local_reference_weights_load_and_trainable_layers_get_their_learning_rate():
    plain = FinetuneNet((1, 28, 28), 10, backbone="reference")
    loaded = FinetuneNet((1, 28, 28), 10, backbone="reference", weights=REFERENCE, trainable_layers=2, backbone_lr=1e-5)
    assert not torch.equal(plain.features[0].weight, loaded.features[0].weight)
    groups = loaded.parameter_groups()
    assert len(groups) == 2
    assert groups[1]["lr"] == 1e-5
    assert len(groups[1]["params"]) == 3
    assert all(not p.requires_grad for p in plain.features.parameters())
    assert len(plain.parameter_groups()) == 1


def test_torchvision_backbone_with_a_local_state_dict_and_a_grayscale_input(tmp_path):
    import torchvision

    source = torchvision.models.resnet18(num_classes=1000)
    torch.save(source.state_dict(), tmp_path / "resnet18.pth")
    net = FinetuneNet((1, 28, 28), 3, backbone="resnet18", weights=str(tmp_path / "resnet18.pth"), input_size=32)
    assert torch.equal(net.features.conv1.weight, source.conv1.weight)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"backbone": "resnet18", "weights": "IMAGENET1K_V1"}, "the download failed"),
        ({"backbone": "resnet18", "weights": "NOPE"}, "is not a weight set of resnet18"),
        ({"backbone": "alexnetz"}, "is not a torchvision classification model"),
        ({"backbone": "reference", "weights": "missing.pt"}, "does not exist"),
    ],
)
def test_bad_backbones_and_weights_are_one_line(kwargs, message, monkeypatch, tmp_path):
    import torchvision

    real = torchvision.models.get_model

    def offline(name, weights=None, **kw):  # this machine has no internet: make that certain
        if weights is not None:
            raise ConnectionError("no network")
        return real(name, weights=None, **kw)

    monkeypatch.setattr(torchvision.models, "get_model", offline)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=message):
        FinetuneNet((3, 32, 32), 2, **kwargs)


@pytest.mark.slow
def test_finetuned_checkpoint_is_analysed_without_reading_the_backbone_file(tmp_path, data_root):
    weights = tmp_path / "MNIST.pt"
    with open(REFERENCE, "rb") as f:
        weights.write_bytes(f.read())
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "model=finetune",
            "data=fashion_mnist",
            "data.n_labeled=100",
            "model.classifier.backbone=reference",
            f"model.classifier.weights={weights}",
            "trainer=debug",
            "logger=none",
        ],
        run_dir,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    weights.unlink()  # the checkpoint holds every weight: the backbone file is not needed to open it
    model, _ = load_game(run_dir / "checkpoints" / "last.ckpt")
    assert isinstance(model.classifier, FinetuneNet)
    proc = run_cli(
        [
            "task=analyze",
            f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}",
            "task.n_saliency=4",
            "task.n_eval=200",
            "task.viz_steps=5",
        ],
        tmp_path / "analyze",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "analyze" / "saliency.png").is_file()
