"""Balanced labeled split and a fast in-memory batch iterator (no DataLoader, no workers).

A training batch is a dict of named *streams*, each a ``(uint8 images, labels)`` pair drawn from a source
(``train`` = the whole training set, ``labeled`` = the labeled subset). Each stream walks its own seeded
permutation and wraps around, so a 1-example labeled stream and a 400-example unlabeled stream can share an
iteration, as in Triple-GAN's training script.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import torch

from gan_lightning.errors import ConfigError


def first_per_class(order: torch.Tensor, labels: torch.Tensor, n_labeled: int, num_classes: int) -> torch.Tensor:
    """The first ``n_labeled / num_classes`` indices of each class in ``order`` (a permutation), sorted."""
    if n_labeled <= 0 or n_labeled % num_classes:
        raise ConfigError(f"data.n_labeled={n_labeled} must be a positive multiple of the {num_classes} classes")
    per_class = n_labeled // num_classes
    chosen = []
    for c in range(num_classes):
        of_class = order[labels[order] == c]
        if len(of_class) < per_class:
            raise ConfigError(
                f"data.n_labeled={n_labeled} asks {per_class} examples of class {c}, the set has {len(of_class)}"
            )
        chosen.append(of_class[:per_class])
    return torch.cat(chosen).sort().values


def balanced_split(labels: torch.Tensor, n_labeled: int, num_classes: int, seed: int) -> torch.Tensor:
    """Indices of ``n_labeled`` examples, ``n_labeled / num_classes`` per class, chosen by a seeded
    ``torch.randperm``."""
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))
    return first_per_class(order, labels, n_labeled, num_classes)


def official_split(labels: torch.Tensor, n_labeled: int, num_classes: int, seed: int) -> torch.Tensor:
    """The labeled subset of the official Triple-GAN scripts: ``numpy.random.RandomState(seed).permutation`` of the
    training set, then the first ``n_labeled / num_classes`` examples of each class in that order (sorted indices)."""
    order = torch.from_numpy(np.random.RandomState(seed).permutation(len(labels)))
    return first_per_class(order, labels, n_labeled, num_classes)


LABEL_SPLITS = {"torch": balanced_split, "official": official_split}


class StreamBatches:
    """Iterable of training batches ``{stream: (x_uint8, y)}`` for one epoch.

    ``epoch_length`` batches per epoch; each epoch's permutations come from ``seed`` and the epoch number,
    so a run is reproducible and a resumed epoch sees the same data. With ``world_size > 1`` each rank takes
    a disjoint slice of every permutation.
    """

    def __init__(
        self,
        sources: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
        streams: Mapping[str, Mapping],
        epoch_length: int,
        seed: int,
        epoch: int = 0,
        rank: int = 0,
        world_size: int = 1,
        skip: int = 0,
    ) -> None:
        self.sources, self.streams, self.epoch_length = sources, streams, epoch_length
        self.seed, self.epoch, self.rank, self.world_size = seed, epoch, rank, world_size
        self.skip = int(skip)  # batches of this epoch already trained (a run resumed mid-epoch): drawn, not yielded

    def __len__(self) -> int:
        return self.epoch_length - self.skip

    def _indices(self, n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        while True:
            perm = torch.randperm(n, generator=gen)[self.rank :: self.world_size]
            for start in range(0, len(perm) - batch_size + 1, batch_size):
                yield perm[start : start + batch_size]
            if len(perm) < batch_size:  # fewer examples than a batch (e.g. 100 labels, batch 500): sample with repeats
                yield perm[torch.randint(len(perm), (batch_size,), generator=gen)]

    def __iter__(self) -> Iterator[dict[str, tuple[torch.Tensor, torch.Tensor]]]:
        iters = {}
        for i, (name, spec) in enumerate(self.streams.items()):
            x, _ = self.sources[spec["source"]]
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 1_009 + i)
            iters[name] = self._indices(len(x), int(spec["batch_size"]), gen)
        for _ in range(self.skip):
            for name in self.streams:
                next(iters[name])
        for _ in range(self.epoch_length - self.skip):
            batch = {}
            for name, spec in self.streams.items():
                x, y = self.sources[spec["source"]]
                idx = next(iters[name])
                batch[name] = (x[idx], y[idx])
            yield batch


def epoch_length(
    sources: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    streams: Mapping[str, Mapping],
    by: str | int,
    world_size: int = 1,
) -> int:
    """Batches per epoch: an int, or one pass of the named stream over its source."""
    if isinstance(by, int):
        return by
    if by not in streams:
        raise ConfigError(f"epoch_length='{by}' is not a stream; streams are {sorted(streams)} (or give an integer)")
    n = len(sources[streams[by]["source"]][0]) // world_size
    return max(1, n // int(streams[by]["batch_size"]))


def held_out_per_class(
    labels: torch.Tensor, size: int, num_classes: int, seed: int, exclude: torch.Tensor | None = None
) -> torch.Tensor:
    """Indices of ``size`` examples with every class equally represented (the remainder one more each for the first
    classes of a seeded order), drawn by a seeded ``torch.randperm`` among the examples not in ``exclude`` (sorted)."""
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=gen)
    if exclude is not None and len(exclude):
        order = order[~torch.isin(order, exclude)]
    extra = torch.randperm(num_classes, generator=gen)[: size % num_classes].tolist()
    chosen = []
    for c in range(num_classes):
        want = size // num_classes + (c in extra)
        of_class = order[labels[order] == c]
        if len(of_class) < want:
            raise ConfigError(
                f"data.val_size={size} asks {want} validation images of class {c}; {len(of_class)} are left "
                "after the labeled ones: give a smaller data.val_size"
            )
        chosen.append(of_class[:want])
    return torch.cat(chosen).sort().values


class EvalBatches:
    """Sequential ``(x, y)`` batches of an evaluation set (one loader, sized, re-iterable); ``name`` is the prefix of
    the metrics computed on it (``val``: held-out training images, ``test``: the official test set)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, name: str = "val") -> None:
        self.x, self.y, self.batch_size, self.name = x, y, batch_size, name

    def __len__(self) -> int:
        return (len(self.x) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(0, len(self.x), self.batch_size):
            yield self.x[i : i + self.batch_size], self.y[i : i + self.batch_size]
