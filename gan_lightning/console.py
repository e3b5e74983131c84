"""What a user sees on the console: the library warnings and notices nobody can act on are dropped here, in one place,
each with its reason. The CLI applies both filters; the benchmarks, which run Lightning in their own process, too."""

from __future__ import annotations

import logging
import warnings

# which accelerators exist (the run's config says which one it uses); that the project's model summary replaces
# Lightning's
DEVICE_NOTICES = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "IPU available:",
    "Trainer already configured with model summary",
)

# (message pattern, why nobody needs to see it)
WARNINGS = (
    (r".*LeafSpec.*", "emitted inside Lightning, not actionable here"),
    (r".*overridden `transfer_batch_to_device`.*",
     "the games move uint8 batches to the device themselves (GameModule.transfer_batch_to_device), on purpose"),
    (r".*is not supported by the model summary.*",
     "the model summary's size estimate under bf16 autocast: a remark about the summary, not the run"),
    (r".*You passed in a `val_dataloader` but have no `validation_step`.*",
     "the GANs have no test error to validate; the datamodule serves every model the same validation set"),
    (r".*overridden `on_after_batch_transfer`.*",
     "the games convert uint8 batches on the device on purpose (GameModule.on_after_batch_transfer)"),
    (r".*your dataloader is not resumable.*",
     "a run resumed mid-epoch continues its epoch where it stopped (ImageDataModule.train_dataloader skips the "
     "done batches)"),
    (r".*when logging on epoch level in distributed setting.*",
     "validation metrics are torchmetrics objects, already reduced across processes when they are computed"),
    (r".*will save all extracted features in buffer.*",
     "torchmetrics' notice that KID/IS keep their features: they are bounded by the configured sample counts"),
)  # fmt: skip


def filter_warnings() -> None:
    """Ignore the warnings of ``WARNINGS`` in this process."""
    for pattern, _reason in WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)


def _keep(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return "litlogger" not in message.lower() and not message.startswith(DEVICE_NOTICES)


def drop_notices() -> None:
    """Drop Lightning's notices nobody can act on (product tips, which accelerators exist) from its loggers and their
    handlers, and from the root logger's."""
    import lightning.pytorch  # noqa: F401 - its loggers exist once it is imported

    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.fabric.utilities.rank_zero",
        "lightning.pytorch",
        "",
    ):
        logger = logging.getLogger(name)
        logger.addFilter(_keep)
        for handler in logger.handlers:
            handler.addFilter(_keep)
