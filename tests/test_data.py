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

from gan_lightning.data import CIFAR10DataModule, FashionMNISTDataModule, MNISTDataModule, StreamBatches, balanced_split
from gan_lightning.data.batches import epoch_length
from gan_lightning.errors import ConfigError

STREAMS = {"real": {"source": "train", "batch_size": 64}}


def make_dm(cls, root, **kw):
    args = dict(data_dir=str(root), image_shape=cls.image_shape, num_classes=10, streams=STREAMS, epoch_length="real", download=False)
    args.update(kw)
    return cls(**args)


@pytest.mark.parametrize("cls", [MNISTDataModule, FashionMNISTDataModule])
def test_idx_datamodules_load_the_real_files(cls, data_root):
    dm = make_dm(cls, data_root)
    dm.setup("fit")
    s = dm.splits
    assert s.train_x.shape == (60000, 1, 28, 28) and s.train_x.dtype == torch.uint8
    assert s.test_x.shape == (10000, 1, 28, 28)
    counts = torch.bincount(s.test_y, minlength=10)
    assert len(counts) == 10 and counts.min() > 800 and counts.sum() == 10000
    assert s.train_x.float().mean() > 10  # real images, not zeros
    batch = next(iter(dm.train_dataloader()))
    x, y = batch["real"]
    assert x.shape == (64, 1, 28, 28) and x.dtype == torch.uint8 and y.shape == (64,)
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
    assert dm.splits.train_x.shape == (100, 3, 32, 32) and dm.splits.test_x.shape == (20, 3, 32, 32)
    assert torch.equal(dm.splits.test_x[3], torch.from_numpy(last[3].reshape(3, 32, 32)))  # CHW order kept
    assert [len(x) for x, _ in dm.val_dataloader()] == [7, 7, 6]


def test_cifar10_checksum_mismatch_is_a_clear_error(tmp_path):
    _write_fake_cifar(tmp_path)
    with pytest.raises(ConfigError, match="checksum mismatch .*data_batch_1"):
        make_dm(CIFAR10DataModule, tmp_path).setup()


def test_missing_files_name_the_directory_and_files(tmp_path):
    with pytest.raises(ConfigError) as err:
        make_dm(MNISTDataModule, tmp_path).setup()
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg and "train-images-idx3-ubyte" in msg and "t10k-labels-idx1-ubyte" in msg


def test_corrupt_file_fails_the_checksum(tmp_path, data_root):
    raw = tmp_path / "MNIST" / "raw"
    shutil.copytree(data_root / "MNIST" / "raw", raw)
    labels = bytearray(gzip.decompress((raw / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    labels[100] = (labels[100] + 1) % 10
    (raw / "t10k-labels-idx1-ubyte.gz").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(labels))  # uncompressed files are read too
    with pytest.raises(ConfigError, match="checksum mismatch .*t10k-labels-idx1-ubyte"):
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
    dm = make_dm(MNISTDataModule, data_root, n_labeled=100, label_seed=3, index_file=str(index),
                 streams={"l": {"source": "labeled", "batch_size": 100}, "u": {"source": "train", "batch_size": 400}}, epoch_length="u")
    dm.setup()
    saved = json.loads(index.read_text())
    assert saved["n_labeled"] == 100 and torch.equal(torch.tensor(saved["indices"]), dm.labeled_idx)
    x_l, y_l = next(iter(dm.train_dataloader()))["l"]
    assert torch.equal(torch.bincount(y_l, minlength=10), torch.full((10,), 10))
    assert torch.equal(dm.splits.train_y[dm.labeled_idx].sort().values, y_l.sort().values)
    assert len(dm.train_dataloader()) == 150


def test_stream_batches_cycle_small_sources_and_shard_by_rank():
    x = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    sources = {"train": (x, torch.arange(50)), "labeled": (x[:3], torch.arange(3))}
    streams = {"u": {"source": "train", "batch_size": 10}, "l": {"source": "labeled", "batch_size": 2}}
    n = epoch_length(sources, streams, "u")
    batches = list(StreamBatches(sources, streams, n, seed=0))
    assert len(batches) == 5 and all(b["l"][0].shape[0] == 2 for b in batches)
    seen = torch.cat([b["u"][1] for b in batches])
    assert torch.equal(seen.sort().values, torch.arange(50))  # one pass = every example once
    again = list(StreamBatches(sources, streams, n, seed=0))
    assert all(torch.equal(a["u"][1], b["u"][1]) for a, b in zip(batches, again))
    other_epoch = list(StreamBatches(sources, streams, n, seed=0, epoch=1))
    assert not torch.equal(batches[0]["u"][1], other_epoch[0]["u"][1])
    r0 = torch.cat([b["u"][1] for b in StreamBatches(sources, streams, 2, seed=0, rank=0, world_size=2)])
    r1 = torch.cat([b["u"][1] for b in StreamBatches(sources, streams, 2, seed=0, rank=1, world_size=2)])
    assert not set(r0.tolist()) & set(r1.tolist())


def test_bad_stream_config_is_rejected(data_root):
    with pytest.raises(ConfigError, match="batch_size=0 must be a positive integer"):
        make_dm(MNISTDataModule, data_root, streams={"real": {"source": "train", "batch_size": 0}})
    with pytest.raises(ConfigError, match="is not one of"):
        make_dm(MNISTDataModule, data_root, streams={"real": {"source": "nowhere", "batch_size": 4}})
    with pytest.raises(ConfigError, match="larger than the training set"):
        make_dm(MNISTDataModule, data_root, n_labeled=70000).setup()


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
    assert "train-labels-idx1-ubyte" in msg and "delete it to download it again" in msg and "\n" not in msg


def test_crafted_cifar_pickle_runs_nothing_even_unverified(tmp_path):
    _write_fake_cifar(tmp_path)
    marker = tmp_path / "ran"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "pickle ran"))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_2", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(ConfigError, match=r"data_batch_2 is damaged \(not a CIFAR-10 batch: UnpicklingError: it names pathlib"):
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
    assert not (tmp_path / "MNIST").exists() and not list(tmp_path.glob(".download-*"))
