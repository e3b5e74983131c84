"""Read the standard image datasets from torchvision's on-disk layout into uint8 tensors.

MNIST / Fashion-MNIST: ``<root>/<Name>/raw/*-idx?-ubyte[.gz]``; CIFAR-10: ``<root>/cifar-10-batches-py``.
Every file is checked against the md5 of its published (decompressed) content.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import shutil
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch

from gan_lightning.errors import ConfigError


@dataclass
class Splits:
    """uint8 images (N, C, H, W) and int64 labels (N,) of the official train and test sets."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor


IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# md5 of the decompressed files as published.
IDX_MD5 = {
    "MNIST": {
        "train-images-idx3-ubyte": "6bbc9ace898e44ae57da46a324031adb",
        "train-labels-idx1-ubyte": "a25bea736e30d166cdddb491f175f624",
        "t10k-images-idx3-ubyte": "2646ac647ad5339dbf082846283269ea",
        "t10k-labels-idx1-ubyte": "27ae3e4e09519cfbb04c329615203637",
    },
    "FashionMNIST": {
        "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
        "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
        "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
        "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
    },
}

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}


REMEDY = "delete it to download it again (data.download=true), or replace it with the published file"


USER_FILE_REMEDY = (
    "replace it with a readable copy or remove it from the folder"  # a user's own image: nothing to download
)


def _damaged(path: Path, what: str, remedy: str = REMEDY) -> ConfigError:
    return ConfigError(f"{path} is damaged ({what}); {remedy}")


def _check_md5(data: bytes, expected: str | None, path: Path) -> None:
    if expected is not None and hashlib.md5(data).hexdigest() != expected:
        raise ConfigError(
            f"checksum mismatch for {path}: the file is corrupt, truncated or not the published one; {REMEDY}"
        )


def _read_maybe_gz(raw: Path, stem: str) -> tuple[bytes, Path] | None:
    for path in (raw / stem, raw / f"{stem}.gz"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix != ".gz":
                return data, path
            try:
                return gzip.decompress(data), path
            except (OSError, EOFError, zlib.error) as err:  # truncated or not gzip at all
                raise _damaged(path, f"not a complete gzip file: {err}") from None
    return None


def _parse_idx(data: bytes, path: Path) -> np.ndarray:
    """IDX format: 2 zero bytes, a type byte (0x08 = uint8), the rank, then big-endian int32 sizes."""
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise _damaged(path, "not an uint8 IDX file")
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    if len(data) < header or len(data) - header != int(np.prod(shape)):
        raise _damaged(path, f"{len(data) - header} bytes of data where its header announces {shape}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


class _ArraysOnly(pickle.Unpickler):
    """Unpickles CIFAR-10's batches (dicts, lists, strings, numpy arrays) and refuses every other global: a
    pickle can name any callable, so a crafted file could otherwise run code when it is read."""

    ALLOWED: ClassVar[set[tuple[str, str]]] = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR-10 batch does not hold")
        return super().find_class(module, name)


def _download_atomically(root: Path, make) -> None:
    """Run torchvision's download into a temporary folder beside ``root`` and move the finished files in: an
    interrupted download leaves nothing half-written in the data root."""
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=".download-") as tmp:
        make(tmp)
        for path in sorted(Path(tmp).rglob("*")):
            target = root / path.relative_to(tmp)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            elif not target.exists():
                shutil.move(str(path), target)


SVHN_MD5 = {
    "train_32x32.mat": "e26dedcc434d2e4c54c9b2d4a06d8373",
    "test_32x32.mat": "eb5a983be6a315427106f1b164d9cef3",
    "extra_32x32.mat": "a93ce644f1a588dc4d68dda5feec44a7",
}


def _missing_message(root: Path, folder: Path, files: list[str]) -> str:
    return (
        f"dataset not found under data root {root}: expected {', '.join(files)} (each may be .gz) in {folder}; "
        "set paths.data_dir=... or GAN_LIGHTNING_DATA, or allow the download (data.download=true, needs internet)"
    )


def load_idx(root: str | Path, name: str, download: bool, verify: bool = True, parse: bool = True) -> Splits | None:
    """Load MNIST-style datasets (``name`` is torchvision's class name: MNIST, FashionMNIST).
    ``parse=False`` only makes sure the files are there (downloading them if allowed)."""
    root = Path(root)
    raw = root / name / "raw"
    if download and any(_read_maybe_gz(raw, f) is None for f in IDX_FILES):
        import torchvision

        def make(tmp: str) -> None:
            getattr(torchvision.datasets, name)(tmp, train=True, download=True)
            getattr(torchvision.datasets, name)(tmp, train=False, download=True)

        try:
            _download_atomically(root, make)
        except Exception as err:
            raise ConfigError(
                _missing_message(root, raw, list(IDX_FILES)) + f" (download failed: {type(err).__name__})"
            ) from err
    if not parse:
        return None
    arrays = {}
    for stem in IDX_FILES:
        found = _read_maybe_gz(raw, stem)
        if found is None:
            raise ConfigError(_missing_message(root, raw, list(IDX_FILES)))
        data, path = found
        if verify:
            _check_md5(data, IDX_MD5.get(name, {}).get(stem), path)
        arrays[stem] = torch.from_numpy(_parse_idx(data, path).copy())
    return Splits(
        train_x=arrays["train-images-idx3-ubyte"].unsqueeze(1),
        train_y=arrays["train-labels-idx1-ubyte"].long(),
        test_x=arrays["t10k-images-idx3-ubyte"].unsqueeze(1),
        test_y=arrays["t10k-labels-idx1-ubyte"].long(),
    )


def load_cifar10(root: str | Path, download: bool, verify: bool = True, parse: bool = True) -> Splits | None:
    """Load CIFAR-10 from torchvision's python-pickle batches (``parse=False``: only download if missing)."""
    root = Path(root)
    folder = root / CIFAR10_DIR
    names = list(CIFAR10_MD5)
    if download and not all((folder / n).is_file() for n in names):
        import torchvision

        try:
            _download_atomically(root, lambda tmp: torchvision.datasets.CIFAR10(tmp, train=True, download=True))
        except Exception as err:
            raise ConfigError(
                _missing_message(root, folder, names) + f" (download failed: {type(err).__name__})"
            ) from err
    if not parse:
        return None
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for n in names:
        path = folder / n
        if not path.is_file():
            raise ConfigError(_missing_message(root, folder, names).replace(" (each may be .gz)", ""))
        data = path.read_bytes()
        if verify:
            _check_md5(data, CIFAR10_MD5[n], path)
        try:
            entry = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
            parts[n] = (np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32), np.asarray(entry["labels"]))
        except Exception as err:  # noqa: BLE001 - truncated, foreign or crafted: the same remedy
            raise _damaged(path, f"not a CIFAR-10 batch: {type(err).__name__}: {str(err)[:100]}") from None
    train = [parts[n] for n in names[:-1]]
    return Splits(
        train_x=torch.from_numpy(np.concatenate([x for x, _ in train])),
        train_y=torch.from_numpy(np.concatenate([y for _, y in train])).long(),
        test_x=torch.from_numpy(parts["test_batch"][0].copy()),
        test_y=torch.from_numpy(parts["test_batch"][1]).long(),
    )


def _read_svhn(path: Path, verify: bool) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 32, 32) uint8 images and int64 labels of one SVHN ``.mat`` file (label 10 is the digit 0)."""
    from scipy.io import loadmat  # MATLAB v5 files: parsed as data, nothing in them is executed

    data = path.read_bytes()
    if verify:
        _check_md5(data, SVHN_MD5.get(path.name), path)
    try:
        mat = loadmat(io.BytesIO(data))
        x = np.ascontiguousarray(np.asarray(mat["X"], dtype=np.uint8).transpose(3, 2, 0, 1))
        y = np.asarray(mat["y"], dtype=np.int64).reshape(-1)
    except Exception as err:  # noqa: BLE001 - truncated or not an SVHN file: the same remedy
        raise _damaged(path, f"not an SVHN .mat file: {type(err).__name__}: {str(err)[:100]}") from None
    if x.shape[1:] != (3, 32, 32) or len(x) != len(y) or not np.isin(y, np.arange(1, 11)).all():
        raise _damaged(path, f"images {x.shape} and {len(y)} labels in 1..10 expected")
    return x, np.where(y == 10, 0, y)


def load_svhn(
    root: str | Path, download: bool, verify: bool = True, parse: bool = True, extra: bool = False
) -> Splits | None:
    """SVHN (torchvision's layout: ``<root>/train_32x32.mat``, ``test_32x32.mat``, optionally ``extra_32x32.mat`` added
    to the training set); labels 0-9 (the files' 10 is the digit 0)."""
    root = Path(root)
    names = ["train_32x32.mat", "test_32x32.mat"] + (["extra_32x32.mat"] if extra else [])
    missing = [n for n in names if not (root / n).is_file()]
    if download and missing:
        import torchvision

        splits = {"train_32x32.mat": "train", "test_32x32.mat": "test", "extra_32x32.mat": "extra"}
        try:
            _download_atomically(
                root, lambda tmp: [torchvision.datasets.SVHN(tmp, split=splits[n], download=True) for n in missing]
            )
        except Exception as err:
            raise ConfigError(
                _missing_message(root, root, names).replace(" (each may be .gz)", "")
                + f" (download failed: {type(err).__name__})"
            ) from err
    if not parse:
        return None
    if any(not (root / n).is_file() for n in names):
        raise ConfigError(_missing_message(root, root, names).replace(" (each may be .gz)", ""))
    train = [_read_svhn(root / n, verify) for n in names if n != "test_32x32.mat"]
    test_x, test_y = _read_svhn(root / "test_32x32.mat", verify)
    return Splits(
        torch.from_numpy(np.concatenate([x for x, _ in train])),
        torch.from_numpy(np.concatenate([y for _, y in train])),
        torch.from_numpy(test_x),
        torch.from_numpy(test_y),
    )


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def load_image_folder(
    folder: str | Path, image_shape, num_classes: int, val_fraction: float, seed: int
) -> tuple[Splits, list[str]]:
    """Images of a folder with one sub-folder per class (the 15-Scene and cats-vs-dogs layouts), each cropped to the
    aspect of ``image_shape`` and resized to it (grayscale for 1 channel, RGB for 3), into uint8 tensors. A seeded
    per-class share ``val_fraction`` becomes the test split. Returns the splits and the class names (sorted)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"data.folder={folder} is not a directory (expected one sub-directory of images per class)")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) != num_classes:
        raise ConfigError(
            f"data.folder={folder} has {len(classes)} class folders {classes[:10]}, data.num_classes={num_classes}"
        )
    c, h, w = (int(v) for v in image_shape)
    if c not in (1, 3):
        raise ConfigError(f"data.image_shape={list(image_shape)}: image folders give 1 (grayscale) or 3 (RGB) channels")
    rng = np.random.default_rng(seed)
    train: tuple[list, list] = ([], [])
    test: tuple[list, list] = ([], [])
    for label, name in enumerate(classes):
        files = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise ConfigError(f"{folder / name} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        images = []
        for path in files:
            try:
                with Image.open(path) as img:
                    img = ImageOps.fit(img.convert("L" if c == 1 else "RGB"), (w, h), Image.Resampling.BILINEAR)
                    array = np.asarray(img, dtype=np.uint8)
            except (OSError, UnidentifiedImageError, ValueError) as err:
                raise _damaged(path, f"not a readable image: {type(err).__name__}", USER_FILE_REMEDY) from None
            images.append(array[None] if c == 1 else array.transpose(2, 0, 1))
        order = rng.permutation(len(images))
        n_val = round(val_fraction * len(images))
        for i, idx in enumerate(order):
            target = test if i < n_val else train
            target[0].append(images[idx])
            target[1].append(label)
    if not train[0] or not test[0]:
        raise ConfigError(
            f"data.val_fraction={val_fraction} leaves no {'training' if not train[0] else 'test'} images in {folder}"
        )

    def stack(part):
        return torch.from_numpy(np.stack(part[0])), torch.tensor(part[1], dtype=torch.int64)

    return Splits(*stack(train), *stack(test)), classes
