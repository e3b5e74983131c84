"""Training callbacks: image grids of the generator's samples, generator metrics, checkpoint on interrupt."""

from gan_lightning.callbacks.dashboard import TensorBoardLayout
from gan_lightning.callbacks.images import SampleGrid
from gan_lightning.callbacks.interrupt import SaveOnInterrupt
from gan_lightning.callbacks.metrics import GeneratorEvaluation
from gan_lightning.callbacks.pruning import OptunaPruning
from gan_lightning.callbacks.schedule import RunProgressBar, ScheduleEstimate
from gan_lightning.callbacks.summary import RunSummary

__all__ = [
    "GeneratorEvaluation",
    "OptunaPruning",
    "RunProgressBar",
    "RunSummary",
    "SampleGrid",
    "SaveOnInterrupt",
    "ScheduleEstimate",
    "TensorBoardLayout",
]
