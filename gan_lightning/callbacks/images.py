"""Image grid of a generator's fixed-noise samples, every N epochs, to TensorBoard and to PNG files."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torchvision.utils as vutils
from lightning.pytorch.utilities import rank_zero_only

from gan_lightning.capabilities import CanGenerate


class SampleGrid(L.Callback):
    """Logs ``pl_module.sample_images()`` (images in [0, 1], row length) as ``samples/grid`` and writes
    ``<dirpath>/epoch_XXXX.png``. Models without a generator are skipped."""

    def __init__(self, every_n_epochs: int = 1, dirpath: str | None = None, tag: str = "samples/grid") -> None:
        self.every_n_epochs, self.dirpath, self.tag = int(every_n_epochs), dirpath, tag

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not isinstance(pl_module, CanGenerate) or (trainer.current_epoch + 1) % self.every_n_epochs:
            return
        images, nrow = pl_module.sample_images()
        grid = vutils.make_grid(images.float().cpu(), nrow=nrow, padding=2, pad_value=1.0)
        for logger in trainer.loggers:
            if hasattr(logger.experiment, "add_image"):
                logger.experiment.add_image(self.tag, grid, global_step=trainer.current_epoch)
        if self.dirpath:
            path = Path(self.dirpath)
            path.mkdir(parents=True, exist_ok=True)
            vutils.save_image(grid, path / f"epoch_{trainer.current_epoch:04d}.png")
