"""Ctrl+C or SIGTERM (e.g. a cluster's pre-emption): save a checkpoint of the exact state, then stop."""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException


class SaveOnInterrupt(L.Callback):
    """On KeyboardInterrupt or SIGTERM, writes ``<dirpath>/last.ckpt`` (atomically, with the trainer's
    CheckpointIO) holding the state after the last finished batch, and says how to resume. Other errors
    (e.g. a NaN loss) leave the last good checkpoint alone."""

    def __init__(self, dirpath: str) -> None:
        self.dirpath = Path(dirpath)

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException) -> None:
        if not isinstance(exception, (KeyboardInterrupt, SIGTERMException)) or trainer.state.fn != "fit":
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        if trainer.is_global_zero:
            what = "SIGTERM" if isinstance(exception, SIGTERMException) else "interrupted"
            print(
                f"{what}: saved epoch {trainer.current_epoch}, step {trainer.global_step} to {path}; "
                f"resume with ckpt_path={path}",
                file=sys.stderr,
                flush=True,
            )
