"""Training callbacks: image grids of the generator's samples, generator metrics."""

from gan_lightning.callbacks.images import SampleGrid
from gan_lightning.callbacks.metrics import GeneratorEvaluation

__all__ = ["GeneratorEvaluation", "SampleGrid"]
