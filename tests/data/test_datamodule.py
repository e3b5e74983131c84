"""Datamodules on the real MNIST / Fashion-MNIST files, CIFAR-10 on files the test writes, the labeled split."""

from __future__ import annotations

import gzip
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import DATA_ROOT, needs_mnist

from gan_lightning.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule, StreamBatches, balanced_split
from gan_lightning.data.batches import epoch_length
from gan_lightning.errors import ConfigError
from gan_lightning.plan import DataPlan, Phase

STREAMS = {"real": {"source": "train", "batch_size": 64}}
PLAN = DataPlan(Phase(STREAMS, "real"))


def make_dm(cls, root, streams=STREAMS, epoch_length="real", **kw):
    """A datamodule serving a game that draws ``streams`` (as ``model.batch_sizes`` would make them)."""
    args = {"data_dir": str(root), "image_shape": cls.image_shape, "num_classes": 10, "download": False}
    args.update(kw)
    dm = cls(**args)
    dm.serve(DataPlan(Phase(streams, epoch_length)))
    return dm


@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule])
def test_idx_datamodules_load_the_real_files(cls, data_root):
    dm = make_dm(cls, data_root)
    dm.setup("fit")
    s = dm.splits
    assert s.train_x.shape == (60000, 1, 28, 28)
    assert s.train_x.dtype == torch.uint8
    assert s.test_x.shape == (10000, 1, 28, 28)
    counts = torch.bincount(s.test_y, minlength=10)
    assert len(counts) == 10
    assert counts.min() > 800
    assert counts.sum() == 10000
    assert s.train_x.float().mean() > 10  # real images, not zeros
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["real"]
    assert x.shape == (64, 1, 28, 28)
    assert x.dtype == torch.uint8
    assert y.shape == (64,)
    assert len(dm.train_dataloader()) == 60000 // 64


def test_mnist_and_fashion_differ(data_root):
    a, b = make_dm(MNISTDataModule, data_root), make_dm(FashionMNISTDataModule, data_root)
    a.setup(), b.setup()
    assert not torch.equal(a.splits.train_x[:10], b.splits.train_x[:10])


def _write_fake_cifar(root, n_per_batch=20):
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, size=(n_per_batch, 3072), dtype=np.uint8)
        labels = list(np.arange(n_per_batch) % 10)
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": labels, "batch_label": name}, f)
    return data


def test_cifar10_reads_torchvision_format(tmp_path):
    last = _write_fake_cifar(tmp_path)
    dm = make_dm(CIFAR10DataModule, tmp_path, verify_checksums=False, eval_batch_size=7)
    dm.setup()
    assert dm.splits.train_x.shape == (100, 3, 32, 32)
    assert dm.splits.test_x.shape == (20, 3, 32, 32)
    assert torch.equal(dm.splits.test_x[3], torch.from_numpy(last[3].reshape(3, 32, 32)))  # CHW order kept
    assert [len(x) for x, _ in dm.test_dataloader()] == [7, 7, 6]


def test_cifar10_checksum_mismatch_is_a_clear_error(tmp_path):
    _write_fake_cifar(tmp_path)
    with pytest.raises(ConfigError, match=r"checksum mismatch .*data_batch_1"):
        make_dm(CIFAR10DataModule, tmp_path).setup()


def test_missing_files_name_the_directory_and_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_dm(MNISTDataModule, tmp_path).setup()
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg
    assert "t10k-labels-idx1-ubyte" in msg


def test_corrupt_file_fails_the_checksum(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_root / "MNIST" / "raw", raw)
    labels = bytearray(gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))  # uncompressed files are read too
    with pytest.raises(ConfigError, match=r"checksum mismatch .*t10k-labels-idx1-ubyte"):
        make_dm(MNISTDataModule, tmp_path).setup()


def test_balanced_split_is_balanced_and_seeded():
    labels = torch.arange(1000) % 10
    a = balanced_split(labels, 100, 10, seed=1)
    assert torch.equal(torch.bincount(labels[a], minlength=10), torch.full((10,), 10))
    assert torch.equal(a, balanced_split(labels, 100, 10, seed=1))
    assert not torch.equal(a, balanced_split(labels, 100, 10, seed=2))
    for bad in (0, -10, 105):
        with pytest.raises(ConfigError, match="multiple of the 10 classes"):
            balanced_split(labels, bad, 10, seed=1)


def test_labeled_subset_and_index_file(tmp_path, data_root):
    index = tmp_path / "labeled_indices.json"
    dm = make_dm(
        MNISTDataModule,
        data_root,
        n_labeled=100,
        label_seed=3,
        index_file=str(index),
        streams={"l": {"source": "labeled", "batch_size": 100}, "u": {"source": "train", "batch_size": 400}},
        epoch_length="u",
    )
    dm.setup()
    saved = json.loads(index.read_text())
    assert saved["n_labeled"] == 100
    assert torch.equal(torch.tensor(saved["indices"]), dm.labeled_idx)
    _x_l, y_l = next(iter(dm.train_dataloader()))["l"]
    assert torch.equal(torch.bincount(y_l, minlength=10), torch.full((10,), 10))
    assert torch.equal(dm.splits.train_y[dm.labeled_idx].sort().values, y_l.sort().values)
    assert len(dm.train_dataloader()) == 150


def test_stream_batches_cycle_small_sources_and_shard_by_rank():
    x = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    sources = {"train": (x, torch.arange(50)), "labeled": (x[:3], torch.arange(3))}
    streams = {"u": {"source": "train", "batch_size": 10}, "l": {"source": "labeled", "batch_size": 2}}
    n = epoch_length(sources, streams, "u")
    batches = list(StreamBatches(sources, streams, n, seed=0))
    assert len(batches) == 5
    assert all(b["l"][0].shape[0] == 2 for b in batches)
    seen = torch.cat([b["u"][1] for b in batches])
    assert torch.equal(seen.sort().values, torch.arange(50))  # one pass = every example once
    again = list(StreamBatches(sources, streams, n, seed=0))
    assert all(torch.equal(a["u"][1], b["u"][1]) for a, b in zip(batches, again))
    other_epoch = list(StreamBatches(sources, streams, n, seed=0, epoch=1))
    assert not torch.equal(batches[0]["u"][1], other_epoch[0]["u"][1])
    r0 = torch.cat([b["u"][1] for b in StreamBatches(sources, streams, 2, seed=0, rank=0, world_size=2)])
    r1 = torch.cat([b["u"][1] for b in StreamBatches(sources, streams, 2, seed=0, rank=1, world_size=2)])
    assert not set(r0.tolist()) & set(r1.tolist())


def test_a_plan_the_datamodule_cannot_serve_is_one_line(data_root):
    with pytest.raises(ConfigError, match=r"reads stream 'real' from 'nowhere'; MNIST serves \['train', 'labeled'\]"):
        make_dm(MNISTDataModule, data_root, streams={"real": {"source": "nowhere", "batch_size": 4}})
    labeled = {"l": {"source": "labeled", "batch_size": 4}}
    with pytest.raises(ConfigError, match=r"data\.n_labeled=70000 is larger than the training set"):
        make_dm(MNISTDataModule, data_root, labeled, "l", n_labeled=70000).setup()
    with pytest.raises(ConfigError, match=r"data\.n_labeled=0: expects a positive integer \(or null for all labels\)"):
        make_dm(MNISTDataModule, data_root, n_labeled=0)
    with pytest.raises(ConfigError, match=r"data\.n_labeled=55 must be a positive multiple of the 10 classes"):
        make_dm(MNISTDataModule, data_root, n_labeled=55)  # when built, before any file is read
    # a game reading no labeled examples trains on every image, whatever data.n_labeled says
    dm = make_dm(MNISTDataModule, data_root, n_labeled=100)
    dm.setup()
    assert dm.n_labeled is None
    assert len(dm.labeled_set[0]) == 60000
    dm = make_dm(MNISTDataModule, data_root)
    with pytest.raises(ConfigError, match=r"has no data plan: give model\.batch_sizes"):
        dm.serve(object())


@pytest.mark.parametrize("damage", ["truncated_gz", "not_gzip", "truncated_raw_unverified", "bad_header_unverified"])
def test_damaged_idx_files_are_one_line_errors_naming_the_file_and_remedy(tmp_path, data_root, damage):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_root / "MNIST" / "raw", raw)
    gz = raw / "train-labels-idx1-ubyte.gz"
    verify = not damage.endswith("_unverified")
    if damage == "truncated_gz":
        gz.write_bytes(gz.read_bytes()[:1000])
    elif damage == "not_gzip":
        gz.write_bytes(b"<html>proxy error</html>")
    else:
        data = gzip.decompress(gz.read_bytes())
        gz.unlink()
        bad = data[:5000] if damage == "truncated_raw_unverified" else b"\x00\x00\x0d\x01" + data[4:]
        (raw / "train-labels-idx1-ubyte").write_bytes(bad)
    with pytest.raises(ConfigError) as err:
        make_dm(MNISTDataModule, tmp_path, verify_checksums=verify).setup()
    msg = str(err.value)
    assert "train-labels-idx1-ubyte" in msg
    assert "delete it to download it again" in msg
    assert "\n" not in msg


def test_crafted_cifar_pickle_runs_nothing_even_unverified(tmp_path):
    _write_fake_cifar(tmp_path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "pickle ran"))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(
        ConfigError, match=r"data_batch_2 is damaged \(not a CIFAR-10 batch: UnpicklingError: it names pathlib"
    ):
        make_dm(CIFAR10DataModule, tmp_path, verify_checksums=False).setup()
    assert not marker.exists()


def test_interrupted_download_leaves_no_partial_file(tmp_path, monkeypatch):
    import torchvision

    def broken_download(root, train=True, download=True):  # writes half a file, then the connection drops
        raw = Path(root) / "MNIST" / "raw"
        raw.mkdir(parents=True)
        (raw / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b partial")
        raise ConnectionError("connection reset")

    monkeypatch.setattr(torchvision.datasets, "MNIST", broken_download)
    with pytest.raises(ConfigError, match="download failed: ConnectionError"):
        make_dm(MNISTDataModule, tmp_path, download=True).prepare_data()
    assert not (tmp_path / "MNIST").exists()
    assert not list(tmp_path.glob(".download-*"))


def _write_fake_svhn(root, n_train=30, n_test=20, n_extra=0):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    written = {}
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test), ("extra_32x32.mat", n_extra)):
        if n:
            x = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
            y = (np.arange(n) % 10 + 1).reshape(-1, 1)  # 1..10, 10 is the digit 0
            savemat(root / name, {"X": x, "y": y})
            written[name] = (x, y)
    return written


def test_svhn_reads_mat_files_maps_label_10_to_0_and_adds_extra(tmp_path):
    from gan_lightning.data import SVHNDataModule

    files = _write_fake_svhn(tmp_path, n_extra=10)
    dm = make_dm(SVHNDataModule, tmp_path, verify_checksums=False)
    dm.setup()
    assert dm.splits.train_x.shape == (30, 3, 32, 32)
    assert dm.splits.test_x.shape == (20, 3, 32, 32)
    x, _y = files["train_32x32.mat"]
    assert torch.equal(dm.splits.train_x[4], torch.from_numpy(x[..., 4].transpose(2, 0, 1).copy()))  # HWC -> CHW
    assert dm.splits.train_y[:10].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]
    with_extra = make_dm(SVHNDataModule, tmp_path, verify_checksums=False, extra=True)
    with_extra.setup()
    assert len(with_extra.splits.train_y) == 40
    with pytest.raises(ConfigError, match=r"checksum mismatch for .*train_32x32\.mat"):
        make_dm(SVHNDataModule, tmp_path).setup()
    (tmp_path / "test_32x32.mat").write_bytes((tmp_path / "test_32x32.mat").read_bytes()[:500])
    with pytest.raises(ConfigError, match=r"test_32x32.mat is damaged \(not an SVHN .mat file"):
        make_dm(SVHNDataModule, tmp_path, verify_checksums=False).setup()
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(ConfigError, match=r"dataset not found .*test_32x32\.mat"):
        make_dm(SVHNDataModule, tmp_path).setup()


def _write_image_folder(root, sizes=((40, 30), (25, 50), (33, 33), (60, 20), (28, 28))):
    from PIL import Image

    rng = np.random.default_rng(1)
    for k, name in enumerate(("cats", "dogs")):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate(sizes):
            pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            pixels[..., 0] = 255 * k  # the red channel tells the class apart
            Image.fromarray(pixels).save(root / name / f"{i}.png" if i % 2 else root / name / f"{i}.jpg", quality=100)
    (root / "dogs" / "notes.txt").write_text("not an image: ignored")


def test_image_folder_resizes_splits_per_class_and_keeps_labels(tmp_path):
    from gan_lightning.data import ImageFolderDataModule

    _write_image_folder(tmp_path / "pets")
    dm = ImageFolderDataModule(str(tmp_path), (3, 16, 16), 2, folder=str(tmp_path / "pets"), val_fraction=0.4)
    dm.setup()
    assert dm.classes == ["cats", "dogs"]
    assert dm.name == "pets"
    assert dm.splits.train_x.shape == (6, 3, 16, 16)
    assert dm.splits.test_x.shape == (4, 3, 16, 16)
    assert dm.splits.train_x.dtype == torch.uint8
    assert torch.bincount(dm.splits.test_y).tolist() == [2, 2]
    red = dm.splits.train_x[:, 0].float().mean((1, 2))
    assert torch.equal(red > 128, dm.splits.train_y == 1)
    gray = ImageFolderDataModule(str(tmp_path), (1, 8, 12), 2, folder=str(tmp_path / "pets"))
    gray.setup()
    assert gray.splits.train_x.shape[1:] == (1, 8, 12)
    again = ImageFolderDataModule(str(tmp_path), (3, 16, 16), 2, folder=str(tmp_path / "pets"), val_fraction=0.4)
    again.setup()
    assert torch.equal(again.splits.test_x, dm.splits.test_x)  # seeded split


@pytest.mark.parametrize(
    "problem,message",
    [
        ("no_folder", "data.folder is required"),
        ("classes", r"has 2 class folders \['cats', 'dogs'\], data.num_classes=3"),
        (
            "broken",
            (
                r"dogs/3.png is damaged \(not a readable image: UnidentifiedImageError\); "
                r"replace it with a readable copy or remove it from the folder$"
            ),
        ),
    ],
)
def test_image_folder_errors_are_one_line(tmp_path, problem, message):
    from gan_lightning.data import ImageFolderDataModule

    _write_image_folder(tmp_path / "pets")
    if problem == "broken":
        (tmp_path / "pets" / "dogs" / "3.png").write_bytes(b"\x89PNG truncated")
    folder = None if problem == "no_folder" else str(tmp_path / "pets")
    with pytest.raises(ConfigError, match=message):
        ImageFolderDataModule(str(tmp_path), (3, 16, 16), 3 if problem == "classes" else 2, folder=folder).setup()


VALIDATED = DataPlan(Phase({"l": {"source": "labeled", "batch_size": 10}}, "l"), validates=True)


@needs_mnist
def test_a_fully_labeled_run_records_its_validation_set(tmp_path):
    index = tmp_path / "idx.json"
    dm = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=None, download=False, index_file=str(index))
    dm.serve(VALIDATED)
    dm.setup()
    saved = json.loads(index.read_text())
    assert saved["indices"] is None  # every other training image is labeled
    assert saved["n_labeled"] == 55000
    assert sorted(saved["val_indices"]) == dm.val_idx.sort().values.tolist()
    assert len(saved["val_indices"]) == 5000


@needs_mnist
def test_the_validation_set_is_held_out_balanced_and_in_no_training_stream(tmp_path):
    from gan_lightning.data.batches import official_split

    index = tmp_path / "idx.json"
    dm = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, download=False, index_file=str(index))
    dm.serve(VALIDATED)
    dm.setup()
    whole = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, download=False)
    whole.setup()  # without a game: every training image, nothing held out
    full_x, full_y = whole.splits.train_x, whole.splits.train_y
    saved = json.loads(index.read_text())
    val, labeled = torch.tensor(saved["val_indices"]), torch.tensor(saved["indices"])
    assert dm.eval_sets == ("val", "test")
    assert len(val) == 5000
    assert torch.bincount(dm.val_set[1]).tolist() == [500] * 10
    assert torch.equal(dm.val_set[0], full_x[val])
    # the labeled images are the official split's, drawn from the whole training set as in the paper
    assert torch.equal(labeled, official_split(full_y, 100, 10, 1))
    assert not set(val.tolist()) & set(labeled.tolist())
    assert torch.equal(dm.labeled_set[0], full_x[labeled])
    assert torch.equal(dm.labeled_set[1], full_y[labeled])
    # every training stream draws from the 55,000 others
    assert len(dm.splits.train_x) == 55000
    assert not set(dm.train_idx.tolist()) & set(val.tolist())
    assert torch.equal(dm.splits.train_x, full_x[dm.train_idx])
    loaders = dm.val_dataloader()
    assert [loader.name for loader in loaders] == ["val", "test"]
    assert sum(len(x) for x, _ in loaders[1]) == 10000
    # another labeled split: the same validation set, less the few images that split labels
    other = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, label_seed=2, download=False)
    other.serve(VALIDATED)
    other.setup()
    assert len(set(other.val_idx.tolist()) & set(val.tolist())) > 4950
    # a share, or none (then only the test set is evaluated)
    share = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, download=False, val_size=0.1)
    share.serve(VALIDATED)
    share.setup()
    assert len(share.val_idx) == 6000
    assert share.has_validation
    none = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, download=False, val_size=0)
    none.serve(VALIDATED)
    none.setup()
    assert none.eval_sets == ("test",)
    assert not none.has_validation
    assert len(none.splits.train_x) == 60000
    assert [loader.name for loader in none.val_dataloader()] == ["test"]


@pytest.mark.parametrize("value", [-1, 1.5, True, 0.0])
def test_a_bad_validation_size_is_one_line(value):
    with pytest.raises(
        ConfigError, match=r"data.val_size=.* must be a whole number of images >= 0 or a share in \(0, 1\)"
    ):
        MNISTDataModule("unused", (1, 28, 28), 10, n_labeled=100, val_size=value)


@needs_mnist
def test_a_validation_set_too_large_for_a_class_is_one_line():
    dm = MNISTDataModule(str(DATA_ROOT), (1, 28, 28), 10, n_labeled=100, download=False, val_size=59000)
    dm.serve(VALIDATED)
    with pytest.raises(ConfigError, match=r"data.val_size=59000 asks 5900 validation images of class 4; 5832 are left"):
        dm.setup()
