"""Training callbacks: image grids of the generator's samples."""

from gan_lightning.callbacks.images import SampleGrid

__all__ = ["SampleGrid"]
