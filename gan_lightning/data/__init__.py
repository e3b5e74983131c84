"""Datasets as in-memory uint8 tensors, the labeled/unlabeled split, and fast batch streams."""

from gan_lightning.data.batches import StreamBatches, balanced_split
from gan_lightning.data.datamodule import (
    CIFAR10DataModule,
    FashionMNISTDataModule,
    ImageDataModule,
    ImageFolderDataModule,
    MNISTDataModule,
    SVHNDataModule,
)

__all__ = [
    "CIFAR10DataModule",
    "FashionMNISTDataModule",
    "ImageDataModule",
    "ImageFolderDataModule",
    "MNISTDataModule",
    "SVHNDataModule",
    "StreamBatches",
    "balanced_split",
]
