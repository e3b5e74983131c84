"""Shared fixtures: the real data root, config composition, and subprocess runs of the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

import gan_lightning  # noqa: F401 - registers the config resolvers
from gan_lightning.schema import register

ROOT = Path(__file__).resolve().parent.parent
CONF = ROOT / "conf"
register()  # the config schemas (Hydra's ConfigStore) that conf/ starts from

if os.environ.get("PYTEST_XDIST_WORKER"):  # `make test` runs one worker per core: one thread each, CLI runs included
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


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
        return compose("config", overrides=[f"paths.output_dir={output_dir}", f"paths.data_dir={DATA_ROOT}",
                                            f"paths.reference_dir={output_dir}/no-reference", *overrides])


def run_cli(args: list[str], run_dir: Path, data_root: Path | None = DATA_ROOT, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m gan_lightning ARGS`` in a subprocess writing into ``run_dir``."""
    # runs see no reference network (so no generator metrics) unless a test passes paths.reference_dir
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GAN_LIGHTNING_REFERENCE": str(Path(run_dir).parent / "no-reference")}
    if data_root is not None:
        env["GAN_LIGHTNING_DATA"] = str(data_root)
    cmd = [sys.executable, "-m", "gan_lightning", *args, f"hydra.run.dir={run_dir}"]
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)


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
        groups = sorted({str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")})
        if groups and "@" not in item.nodeid and hasattr(item, "_id"):
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(groups)}")
