"""Command line: ``python -m gan_lightning [group=option ...] [key=value ...]`` (Hydra; ``--help`` lists groups)."""

from __future__ import annotations

import logging
import shutil
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig

from gan_lightning.console import drop_notices, filter_warnings
from gan_lightning.errors import ConfigError, TrainingError
from gan_lightning.moved import hint as moved_hint
from gan_lightning.schema import register
from gan_lightning.sweepers import install as resumable_optuna

CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")
register()  # the schemas conf/ starts from (gan_lightning/schema.py)
resumable_optuna()  # sweep=optuna_* ... resume=true continues a stored study (gan_lightning/sweepers.py)


def _user_error(err: BaseException | None) -> ConfigError | TrainingError | None:
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
    if out.is_dir() and {p.name for p in out.iterdir()} <= {
        ".hydra",
        "__main__.log",
        "main.log",
        "labeled_indices.json",
    }:
        shutil.rmtree(out, ignore_errors=True)


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="config")
def run(cfg: DictConfig) -> float | None:
    _quiet_lightning()
    try:
        task = instantiate(cfg.task)
        return task(cfg)
    except Exception as err:
        found = _user_error(err)
        if found is None:
            raise
        if isinstance(found, ConfigError):
            _discard_run_dir()
        print(f"error: {found}", file=sys.stderr)
        sys.exit(2 if isinstance(found, ConfigError) else 3)


def _quiet_lightning() -> None:
    """Drop Lightning's notices a user cannot act on (product tips, which accelerators exist: the run's config says
    which one it uses), and send its messages through Hydra's handlers (console and the run's log file). Called inside
    the run, after Hydra's logging set-up: Lightning, imported before it (the config schemas are made from the
    classes), gave its loggers a console handler of their own and stopped them from reaching the root logger."""
    import lightning.pytorch  # noqa: F401

    if logging.getLogger().hasHandlers():
        for name in ("lightning.pytorch", "lightning.fabric"):
            own = logging.getLogger(name)
            if not own.propagate:
                for console in [h for h in own.handlers if type(h) is logging.StreamHandler]:
                    own.removeHandler(console)
                own.propagate = True

    drop_notices()


def _check_overrides(argv: list[str]) -> None:
    """Compose the config once before Hydra does, so that its composition errors (an unknown option of a group, a
    key that does not exist, a malformed override) read as one line with exit status 2 like every other user error.
    Command lines with flags (``-m``, ``--help``, ``--cfg``) go to Hydra unchanged."""
    if any(arg.startswith("-") for arg in argv):
        return
    from hydra import compose, initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    try:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            compose("config", overrides=argv)
    except (HydraException, OmegaConfBaseException) as err:
        text = str(err).split("Config search path")[0]
        options = [line.strip() for line in text.splitlines() if line.startswith(("\t", "  ")) and line.strip()]
        lines = [line.strip() for line in text.splitlines() if line.strip() and line.strip() not in options]
        message = "; ".join(line.rstrip(".") for line in lines) + (" " + ", ".join(options) if options else "")
        moved = next(((arg, said) for arg in argv if (said := moved_hint(arg))), None)
        if moved:  # a key of an earlier release: where it is now (Hydra's advice to append it would not help)
            message = f"{moved[0].lstrip('+~').split('=', 1)[0]}: {moved[1]}"
        print("error: " + message, file=sys.stderr)
        sys.exit(2)


def main() -> None:
    _check_overrides(sys.argv[1:])
    filter_warnings()  # gan_lightning/console.py: each with its reason
    run()


if __name__ == "__main__":
    main()
