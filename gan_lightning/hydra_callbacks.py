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
            print(
                f"error: {key}={directory} cannot be written ({why}); choose another with {key}=<dir>", file=sys.stderr
            )
            sys.exit(2)

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.run.dir, "hydra.run.dir")

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config.hydra.sweep.dir, "hydra.sweep.dir")


def claim_directory(path: str) -> str:
    """``path``, or ``path-2``, ``path-3``, ... when another run already holds it: the first that this process creates
    itself (``mkdir`` is atomic), so runs started in the same second (a shell loop over seeds) never share a
    directory. The ``${unique_dir:...}`` resolver of ``hydra.run.dir`` and ``hydra.sweep.dir``; cached with the config,
    so every later read of the key (and a sweep's jobs in other processes) gets the same directory."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        candidate = base if n == 1 else base.with_name(f"{base.name}-{n}")
        try:
            candidate.mkdir()
        except FileExistsError:
            continue
        except OSError:  # unwritable: CheckOutputDir says so in one line
            return str(base)
        return str(candidate)
    raise RuntimeError(f"{path}: 10,000 runs in one second")
