"""Shared fixtures: the real data root, config composition, and subprocess runs of the CLI."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import gan_lightning  # noqa: F401 - registers the config resolvers
from gan_lightning.acceleration import reuse_cpu_memory
from gan_lightning.schema import register

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
register()  # the config schemas (Hydra's ConfigStore) that conf/ starts from

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each, CLI runs included
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)

# as every training run does (trainer.reuse_cpu_memory): the in-process trainings and forked CLI runs
reuse_cpu_memory()


def _data_root() -> Path | None:
    for candidate in (os.environ.get("GAN_LIGHTNING_DATA"), ROOT / "data", ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw").is_dir():
            return Path(candidate).resolve()
    return None


DATA_ROOT = _data_root()
needs_mnist = pytest.mark.skipif(DATA_ROOT is None, reason="real MNIST files not found (set GAN_LIGHTNING_DATA)")


@pytest.fixture(scope="session")
def data_root() -> Path:
    if DATA_ROOT is None:
        pytest.skip("real MNIST files not found (set GAN_LIGHTNING_DATA)")
    return DATA_ROOT


def compose_cfg(overrides: list[str], output_dir: str | Path = "/tmp/gan_lightning_test"):
    """The project's real config, composed as the CLI would (paths filled in for use outside a Hydra run)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(
            "config",
            overrides=[
                f"paths.output_dir={output_dir}",
                f"paths.data_dir={DATA_ROOT}",
                f"paths.reference_dir={output_dir}/no-reference",
                *overrides,
            ],
        )


class _Forker:
    """``tests/cli_forker.py``: one process per test worker that imports the CLI once and forks each CLI run from it
    (a real process with its own environment, arguments, output and exit status; only the imports are shared)."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen | None = None

    def run(self, args: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "cli_forker.py")],
                cwd=ROOT,
                text=True,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                env={**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(ROOT)},
            )
        with tempfile.TemporaryDirectory() as out_dir:
            stdout, stderr = Path(out_dir) / "stdout", Path(out_dir) / "stderr"
            request = {
                "args": args,
                "env": env,
                "cwd": str(ROOT),
                "stdout": str(stdout),
                "stderr": str(stderr),
                "timeout": timeout,
            }
            assert self.proc.stdin is not None
            assert self.proc.stdout is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            reply = self.proc.stdout.readline()
            if not reply:
                raise RuntimeError("tests/cli_forker.py stopped (run it by hand to see why)")
            code = json.loads(reply)["returncode"]
            cmd = [sys.executable, "-m", "gan_lightning", *args]
            if code is None:
                raise subprocess.TimeoutExpired(cmd, timeout)
            return subprocess.CompletedProcess(cmd, code, stdout.read_text(), stderr.read_text())


_FORKER = _Forker()


def run_cli(
    args: list[str], run_dir: Path, data_root: Path | None = DATA_ROOT, timeout: int = 300, fresh: bool = False
) -> subprocess.CompletedProcess:
    """``python -m gan_lightning ARGS`` in a process of its own writing into ``run_dir``: forked from a process that
    has imported the CLI already (``tests/cli_forker.py``), or with ``fresh=True`` a new interpreter (for what a
    fresh start shows, such as warnings emitted while importing)."""
    # runs see no reference network (so no generator metrics) unless a test passes paths.reference_dir
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GAN_LIGHTNING_REFERENCE": str(Path(run_dir).parent / "no-reference")}
    if data_root is not None:
        env["GAN_LIGHTNING_DATA"] = str(data_root)
    args = [*args, f"hydra.run.dir={run_dir}"]
    if not (fresh or os.environ.get("GAN_LIGHTNING_TEST_FRESH")):  # =1: every CLI run in a new interpreter
        return _FORKER.run(args, env, timeout)
    cmd = [sys.executable, "-m", "gan_lightning", *args]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


def start_cli(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """``python -m gan_lightning ARGS`` started in the background (a test that stops it part-way), output piped."""
    env = {**os.environ, "GAN_LIGHTNING_DATA": str(DATA_ROOT), "GAN_LIGHTNING_REFERENCE": str(tmp_path / "none")}
    cmd = [sys.executable, "-m", "gan_lightning", *args]
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


NOTICES = re.compile(
    r"\w+Warning: |^\S+\.py:\d+: |litlogger|💡|Tip:|(GPU|TPU|HPU) available:|Total FLOPs", re.IGNORECASE
)


def library_noise(output: str) -> list[str]:
    """The lines of a command's console that a user cannot act on: Python warnings and libraries' notices and tips."""
    return [line for line in output.splitlines() if NOTICES.search(line)]


def pytest_collection_modifyitems(config, items):
    """Keep each ``xdist_group`` on one worker under ``--dist loadgroup``: pytest-xdist marks a grouped test by a
    ``@group`` suffix of its node id, which it writes where pytest 9 no longer keeps the id, so the groups (and
    the expensive CLI runs they share) were spread over the workers and run once per worker. Written here too."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:
        from _pytest.nodeid import coerce_node_id
    except ImportError:  # an older pytest: pytest-xdist's own suffix works there
        return
    for item in items:
        groups = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if groups and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")
