"""TensorBoard's first view: a custom-scalars layout with the charts people look at, per kind of game."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger

from gan_lightning.capabilities import CanGenerate, HasClassifier, HasPhases


def layout(module: L.LightningModule, has_validation: bool = True) -> dict:
    """``{category: {chart: ["Multiline", [tag regexes]]}}`` for ``SummaryWriter.add_custom_scalars``: the validation
    errors (what is chosen by) first, then the test errors (what is reported)."""
    charts: dict[str, dict] = {}
    if isinstance(module, HasClassifier):
        if has_validation:
            charts["validation error"] = {
                "C and EMA C (validation error)": ["Multiline", [r"val/err_c$", r"val/err_ema$"]],
                "best so far (validation)": ["Multiline", [r"val/best_err_.*"]],
            }
        charts["test error"] = {"C and EMA C (test error)": ["Multiline", [r"test/err_c$", r"test/err_ema$"]]}
    if isinstance(module, CanGenerate):
        charts["generator"] = {
            "FID (reference features)": ["Multiline", [r"gen/fid$"]],
            "conditional accuracy": ["Multiline", [r"gen/cond_acc$", r"gen/ema_c_acc$"]],
            "KID": ["Multiline", [r"gen/kid_mean$"]],  # KID ~1e-3, IS ~10: one scale each
            "IS": ["Multiline", [r"gen/is_mean$"]],
            "precision, recall (k = 3)": ["Multiline", [r"gen/precision$", r"gen/recall$"]],
            "density, coverage": ["Multiline", [r"gen/density$", r"gen/coverage$"]],
        }
        charts["losses"] = {"D": ["Multiline", [r"train/d/.*"]], "G": ["Multiline", [r"train/g/.*"]]}
        if isinstance(module, HasClassifier):
            charts["losses"]["C"] = ["Multiline", [r"train/c/.*"]]
    if isinstance(module, HasPhases):
        charts.setdefault("losses", {})["C, pre-training"] = ["Multiline", [r"pretrain/c/.*"]]
    if not isinstance(module, CanGenerate) and isinstance(module, HasClassifier):
        charts["losses"] = {"training": ["Multiline", [r"train/.*"]]}
    return charts


class TensorBoardLayout(L.Callback):
    """Writes the custom-scalars layout of the game (TensorBoard's CUSTOM SCALARS tab) when training starts."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero:
            return
        datamodule = trainer.datamodule
        charts = layout(pl_module, has_validation=getattr(datamodule, "has_validation", True))
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger) and charts:
                logger.experiment.add_custom_scalars(charts)
