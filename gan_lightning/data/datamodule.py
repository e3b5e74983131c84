"""LightningDataModules for MNIST, Fashion-MNIST and CIFAR-10, held in memory as uint8 tensors."""

from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import torch

from gan_lightning.data.batches import LABEL_SPLITS, EvalBatches, StreamBatches, epoch_length, held_out_per_class
from gan_lightning.data.sources import Splits, load_cifar10, load_idx, load_image_folder, load_svhn
from gan_lightning.errors import ConfigError
from gan_lightning.lightning_compat import batches_completed, resuming_mid_epoch
from gan_lightning.plan import SOURCES, DataPlan, Phase


class ImageDataModule(L.LightningDataModule):
    """Train/val/test image data with an optional balanced labeled subset.

    Args:
        data_dir: data root (torchvision's layout underneath).
        image_shape, num_classes: what the config promises the models (checked against the dataset).
        n_labeled: how many training images carry a label for a game that reads labeled examples (semi-supervised:
            Triple-GAN, the classifier), balanced per class; null: every one. Games that read no labeled examples
            (the GANs) train on every training image whatever it says.
        label_seed: which ``n_labeled`` training images carry a label.
        label_split: how ``label_seed`` picks the labeled subset: ``official`` (the official Triple-GAN scripts' numpy
            permutation of the whole training set: the same images for the same seed) or ``torch`` (a seeded
            ``torch.randperm``).
        val_size: the validation set of a game with a classifier (``val/*``): this many training images (a number in
            (0, 1): this share of them), every class equally represented, never labeled for training and never in the
            unlabeled stream. 0: no validation set (then nothing is named ``val/``). The official test set is
            ``test/*``, logged every epoch and never used to choose anything.
        val_seed: which images the validation set holds (the same set for every ``label_seed``, less the few labeled
            images it would share with that split).
        eval_batch_size: batch size of the evaluation passes.
        download, verify_checksums: fetch missing files; check their md5.
        index_file: where the labeled and validation indices are written (JSON), null to skip.
        seed: seed of the training streams' permutations.

    What is drawn each iteration, and how many images carry a label, is the game's (``serve(model)``,
    ``gan_lightning.plan``); without a game (evaluation, sampling) every training image is labeled.
    """

    name: str = ""
    image_shape: tuple[int, int, int] = (1, 28, 28)
    num_classes: int = 10

    def __init__(
        self,
        data_dir: str,
        image_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        n_labeled: int | None = None,
        label_seed: int = 1,
        label_split: str = "official",
        val_size: int | float = 5000,
        val_seed: int = 0,
        eval_batch_size: int = 1000,
        download: bool = True,
        verify_checksums: bool = True,
        index_file: str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if tuple(image_shape) != tuple(self.image_shape) or int(num_classes) != self.num_classes:
            raise ConfigError(
                f"{self.name} has images {tuple(self.image_shape)} and {self.num_classes} classes; "
                f"the config says {tuple(image_shape)} and {num_classes}"
            )
        self.data_dir = str(data_dir)
        self.plan: DataPlan | None = None  # the game's, from serve()
        self.labels = n_labeled  # what the config asks; ``n_labeled`` is what the game served draws
        self.label_seed, self.val_size, self.val_seed = int(label_seed), val_size, int(val_seed)
        self.label_split = label_split
        self.eval_batch_size, self.download, self.verify = int(eval_batch_size), bool(download), bool(verify_checksums)
        self.index_file, self.seed = index_file, int(seed)
        self.splits: Splits | None = None
        self.labeled_idx: torch.Tensor | None = None
        self.val_idx: torch.Tensor | None = None  # in the official training set's numbering
        self.val_set: tuple[torch.Tensor, torch.Tensor] | None = None
        self.train_idx: torch.Tensor | None = None  # the training images kept, in the official numbering
        self._validate_config()

    @property
    def n_labeled(self) -> int | None:
        """Training images with a label for the game served: ``data.n_labeled`` when it reads labeled examples, else
        None (every training image, with its label)."""
        return self.labels if self.plan is not None and self.plan.reads_labeled else None

    def serve(self, game: object) -> None:
        """Take the game's data plan (its streams per phase, how many images carry a label; a game or a ``DataPlan``)
        and check it can be served, before ``setup``: one line naming what is missing otherwise."""
        plan = game if isinstance(game, DataPlan) else getattr(game, "plan", None)
        if not isinstance(plan, DataPlan):
            raise ConfigError(
                f"model: {type(game).__name__} has no data plan: give model.batch_sizes, one per stream it "
                f"reads ({sorted(getattr(game, 'STREAMS', {}))})"
            )
        for phase in (plan.game, plan.pretrain):
            for name, spec in (phase.streams if phase else {}).items():
                if spec["source"] not in SOURCES:
                    raise ConfigError(
                        f"{type(game).__name__} reads stream '{name}' from '{spec['source']}'; "
                        f"{self.name or type(self).__name__} serves {list(SOURCES)}"
                    )
        before = (self.n_labeled, self.validates)
        self.plan = plan
        if self.splits is not None and before != (self.n_labeled, self.validates):
            self.splits = None  # set up for another labeled subset: the next setup() draws this one

    def _validate_config(self) -> None:
        n = self.labels
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n <= 0):
            raise ConfigError(f"data.n_labeled={n!r}: expects a positive integer (or null for all labels)")
        if n is not None and n % self.num_classes:
            raise ConfigError(f"data.n_labeled={n} must be a positive multiple of the {self.num_classes} classes")
        if self.label_split not in LABEL_SPLITS:
            raise ConfigError(f"data.label_split={self.label_split!r} is not one of {list(LABEL_SPLITS)}")
        if self.eval_batch_size <= 0:
            raise ConfigError(f"data.eval_batch_size={self.eval_batch_size} must be a positive integer")
        size = self.val_size
        if isinstance(size, bool) or not (
            (isinstance(size, int) and size >= 0) or (isinstance(size, float) and 0.0 < size < 1.0)
        ):
            raise ConfigError(f"data.val_size={size!r} must be a whole number of images >= 0 or a share in (0, 1)")

    # -- loading ---------------------------------------------------------------------------------------
    def _load(self, download: bool, parse: bool = True) -> Splits | None:  # pragma: no cover - overridden
        raise NotImplementedError

    def prepare_data(self) -> None:
        if self.download:  # one process per node, before setup: fetch missing files, read nothing
            self._load(download=True, parse=False)

    def setup(self, stage: str | None = None) -> None:
        if self.splits is not None:
            return
        splits = self._load(download=False)
        assert splits is not None  # parse=True always returns the splits
        if tuple(splits.train_x.shape[1:]) != tuple(self.image_shape):
            raise ConfigError(
                f"{self.name}: images are {tuple(splits.train_x.shape[1:])}, expected {tuple(self.image_shape)}"
            )
        n_labeled = self.n_labeled
        if n_labeled is not None and n_labeled > len(splits.train_y):
            raise ConfigError(f"data.n_labeled={n_labeled} is larger than the training set ({len(splits.train_y)})")
        # the labeled subset is drawn from the whole training set (the official splits keep their images), then the
        # validation set from the images left; the game trains on everything but the validation set
        labeled = (
            None
            if n_labeled is None
            else LABEL_SPLITS[self.label_split](splits.train_y, n_labeled, self.num_classes, self.label_seed)
        )
        size = self.held_out_size(len(splits.train_y))
        if size:
            if size + (n_labeled or 0) >= len(splits.train_y):
                raise ConfigError(
                    f"data.val_size={self.val_size} leaves no training data ({len(splits.train_y)} images)"
                )
            self.val_idx = held_out_per_class(splits.train_y, size, self.num_classes, self.val_seed, exclude=labeled)
            keep = torch.ones(len(splits.train_y), dtype=torch.bool)
            keep[self.val_idx] = False
            self.val_set = (splits.train_x[self.val_idx], splits.train_y[self.val_idx])
            # renumber the labeled indices into the kept images (the index file keeps the official numbering)
            self.labeled_idx = None if labeled is None else (torch.cumsum(keep, 0) - 1)[labeled]
            self.train_idx = keep.nonzero().squeeze(1)
            splits = Splits(splits.train_x[keep], splits.train_y[keep], splits.test_x, splits.test_y)
        else:
            self.val_idx, self.val_set, self.labeled_idx = None, None, labeled
            self.train_idx = torch.arange(len(splits.train_y))
        self.splits = splits
        if self.labeled_idx is None:  # every example labeled: share the training tensors, copy nothing
            self.labeled_idx = torch.arange(len(splits.train_y))
            self.labeled_set = (splits.train_x, splits.train_y)
        else:
            self.labeled_set = (splits.train_x[self.labeled_idx], splits.train_y[self.labeled_idx])
        self._write_index_file()

    @property
    def validates(self) -> bool:
        """Whether the game served evaluates a classifier (without a game: no, every training image is served)."""
        return self.plan is not None and self.plan.validates

    @property
    def has_validation(self) -> bool:
        """Whether the runs of the game served have a validation set (``val/*``)."""
        return self.validates and self.val_size != 0

    def held_out_size(self, n_train: int) -> int:
        """Validation images held out of ``n_train`` training images for the game served (0: none)."""
        if not self.validates:
            return 0
        return round(self.val_size * n_train) if isinstance(self.val_size, float) else int(self.val_size)

    @property
    def eval_sets(self) -> tuple[str, ...]:
        """The evaluation passes of every epoch, in the order of ``val_dataloader``: ``val`` (when there is a
        validation set), then ``test``."""
        return ("val", "test") if self.val_set is not None else ("test",)

    def _write_index_file(self) -> None:
        if (
            not self.index_file
            or (self.n_labeled is None and self.val_idx is None)  # every image labeled, nothing held out: no record
            or (self.trainer is not None and self.trainer.global_rank != 0)
        ):
            return
        path = Path(self.index_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        assert self.labeled_idx is not None
        assert self.train_idx is not None
        # indices in the official training set's numbering
        payload = {
            "dataset": self.name,
            "n_labeled": len(self.labeled_idx),
            "label_seed": self.label_seed,
            "label_split": self.label_split,
            # null when every training image outside the validation set is labeled (data.n_labeled=null)
            "indices": None if self.n_labeled is None else self.train_idx[self.labeled_idx].tolist(),
            "val_size": 0 if self.val_idx is None else len(self.val_idx),
            "val_seed": self.val_seed,
            "val_indices": [] if self.val_idx is None else self.val_idx.tolist(),
        }
        path.write_text(json.dumps(payload))

    # -- loaders ---------------------------------------------------------------------------------------
    @property
    def sources(self) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        assert self.splits is not None, "call setup() first"
        return {"train": (self.splits.train_x, self.splits.train_y), "labeled": self.labeled_set}

    def _phase(self, pretraining: bool) -> Phase:
        if self.plan is None:
            raise ConfigError("no game to draw training batches for: call serve(model) before training")
        return self.plan.phase(pretraining)

    def in_pretraining(self, epoch: int) -> bool:
        """Whether ``epoch`` uses the pre-training streams: the game's schedule decides (its plan's ``phases``, e.g. a
        pre-training that ends by wall time)."""
        if self.plan is None or self.plan.pretrain is None or self.plan.phases is None:
            return False
        return bool(self.plan.phases.in_pretraining(epoch))

    def iterations_per_epoch(self, pretraining: bool = False) -> int:
        """Batches in one epoch of the game's phase (before ``trainer.limit_train_batches``)."""
        phase = self._phase(pretraining)
        world = self.trainer.world_size if self.trainer is not None else 1
        return epoch_length(self.sources, phase.streams, phase.epoch_length, world)

    def train_dataloader(self) -> StreamBatches:
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        phase = self._phase(self.in_pretraining(epoch))
        sources = self.sources
        # resumed from a checkpoint saved mid-epoch (Ctrl+C, SIGTERM): the epoch continues where it stopped
        skip = batches_completed(trainer) if trainer is not None and resuming_mid_epoch(trainer) else 0
        length = epoch_length(sources, phase.streams, phase.epoch_length, world)
        return StreamBatches(sources, phase.streams, length, self.seed, epoch, rank, world, skip)

    def _eval_batches(self, x: torch.Tensor, y: torch.Tensor, name: str) -> EvalBatches:
        trainer = self.trainer
        if trainer is not None and trainer.world_size > 1:  # shard evaluation; metrics are reduced across ranks
            x, y = x[trainer.global_rank :: trainer.world_size], y[trainer.global_rank :: trainer.world_size]
        return EvalBatches(x, y, self.eval_batch_size, name)

    def val_dataloader(self) -> list[EvalBatches]:
        """Every epoch's evaluation passes (``eval_sets``): the validation set, then the official test set."""
        assert self.splits is not None
        test = self._eval_batches(self.splits.test_x, self.splits.test_y, "test")
        return [test] if self.val_set is None else [self._eval_batches(*self.val_set, "val"), test]

    def test_dataloader(self) -> EvalBatches:
        assert self.splits is not None
        return self._eval_batches(self.splits.test_x, self.splits.test_y, "test")


class MNISTDataModule(ImageDataModule):
    name, image_shape, num_classes = "MNIST", (1, 28, 28), 10

    def _load(self, download: bool, parse: bool = True) -> Splits | None:
        return load_idx(self.data_dir, "MNIST", download, self.verify, parse)


class FashionMNISTDataModule(ImageDataModule):
    name, image_shape, num_classes = "FashionMNIST", (1, 28, 28), 10

    def _load(self, download: bool, parse: bool = True) -> Splits | None:
        return load_idx(self.data_dir, "FashionMNIST", download, self.verify, parse)


class CIFAR10DataModule(ImageDataModule):
    name, image_shape, num_classes = "CIFAR10", (3, 32, 32), 10

    def _load(self, download: bool, parse: bool = True) -> Splits | None:
        return load_cifar10(self.data_dir, download, self.verify, parse)


class SVHNDataModule(ImageDataModule):
    """Street View House Numbers (Triple-GAN's second benchmark): 73,257 training and 26,032 test digits, 32x32 RGB;
    ``extra=true`` adds the 531,131 easier ``extra`` images to the training set."""

    name, image_shape, num_classes = "SVHN", (3, 32, 32), 10

    def __init__(self, *args, extra: bool = False, **kwargs) -> None:
        self.extra = bool(extra)
        super().__init__(*args, **kwargs)

    def _load(self, download: bool, parse: bool = True) -> Splits | None:
        return load_svhn(self.data_dir, download, self.verify, parse, extra=self.extra)


class ImageFolderDataModule(ImageDataModule):
    """Any folder of images with one sub-folder per class (15-Scene, cats-vs-dogs, face crops), at a chosen size,
    held in memory as uint8 like the other datamodules. A seeded per-class share ``val_fraction`` is the test set;
    the validation set is ``val_size`` (a share, by default) of the rest.

    Args (besides ``ImageDataModule``'s): folder: the directory; val_fraction: share of each class held out as the
        test set; split_seed: seed of that split; val_size: as for every datamodule, here a tenth by default.
    """

    def __init__(
        self,
        data_dir: str,
        image_shape: tuple[int, int, int] | list[int],
        num_classes: int,
        folder: str | None = None,
        val_fraction: float = 0.2,
        split_seed: int = 0,
        val_size: int | float = 0.1,
        **kwargs,
    ) -> None:
        if not folder:
            raise ConfigError("data.folder is required: a directory with one sub-directory of images per class")
        if not 0.0 < val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction={val_fraction} must be in (0, 1)")
        self.folder, self.val_fraction, self.split_seed = str(folder), float(val_fraction), int(split_seed)
        self.name = Path(self.folder).name or "ImageFolder"
        c, h, w = (int(v) for v in image_shape)
        self.image_shape = (c, h, w)
        self.num_classes = int(num_classes)
        self.classes: list[str] = []
        super().__init__(data_dir, image_shape, num_classes, val_size=val_size, **kwargs)

    def _load(self, download: bool, parse: bool = True) -> Splits | None:
        if not parse:
            return None
        splits, self.classes = load_image_folder(
            self.folder, self.image_shape, self.num_classes, self.val_fraction, self.split_seed
        )
        return splits
