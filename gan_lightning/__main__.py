"""Command line: ``python -m gan_lightning [group=option ...] [key=value ...]`` (Hydra; ``--help`` lists groups)."""

from __future__ import annotations

import shutil
import sys
import warnings
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from gan_lightning.errors import ConfigError, TrainingError

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")


def _user_error(err: BaseException) -> ConfigError | TrainingError | None:
    while err is not None:
        if isinstance(err, (ConfigError, TrainingError)):
            return err
        err = err.__cause__ or err.__context__
    return None


def _discard_run_dir() -> None:
    """Remove the run directory Hydra made for a run that failed before training (it holds only the config)."""
    try:
        out = Path(HydraConfig.get().runtime.output_dir)
    except Exception:  # noqa: BLE001 - not under Hydra
        return
    if out.is_dir() and {p.name for p in out.iterdir()} <= {".hydra", "__main__.log", "main.log", "labeled_indices.json"}:
        shutil.rmtree(out, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    try:
        task = instantiate(cfg.task)
        return task(cfg)
    except Exception as err:  # noqa: BLE001
        found = _user_error(err)
        if found is None:
            raise
        if isinstance(found, ConfigError):
            _discard_run_dir()
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2 if isinstance(found, ConfigError) else 3)


def main() -> None:
    warnings.filterwarnings("ignore", message=r".*LeafSpec.*")  # emitted inside Lightning, not actionable here
    # the games convert uint8 batches on the device on purpose (see GameModule.on_after_batch_transfer)
    warnings.filterwarnings("ignore", message=r".*overridden `on_after_batch_transfer`.*")
    # a run resumed mid-epoch continues its epoch where it stopped (ImageDataModule.train_dataloader skips the done batches)
    warnings.filterwarnings("ignore", message=r".*your dataloader is not resumable.*")
    # validation metrics are torchmetrics objects, already reduced across processes when they are computed
    warnings.filterwarnings("ignore", message=r".*when logging on epoch level in distributed setting.*")
    # torchmetrics' notice that KID/IS keep their features: they are bounded by the configured sample counts
    warnings.filterwarnings("ignore", message=r".*will save all extracted features in buffer.*")
    run()


if __name__ == "__main__":
    main()
