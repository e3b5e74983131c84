"""Hydra callbacks: checks that must happen before Hydra creates a run directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def _writable(directory: str) -> str | None:
    """None when ``directory`` can be created and written, else why not."""
    path = Path(directory)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        return err.strerror or type(err).__name__
    return None


class CheckOutputDir(Callback):
    """Stops with one line and exit status 2 when the run (or sweep) directory cannot be written."""

    def _check(self, directory: str, key: str) -> None:
        why = _writable(directory)
        if why is not None:
            print(f"error: {key}={directory} cannot be written ({why}); choose another with {key}=<dir>", file=sys.stderr)
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")
