"""Sweeper and launcher presets: Optuna optimises a logged metric, joblib runs jobs in parallel, SLURM composes."""

from __future__ import annotations

import pytest
import yaml
from conftest import needs_mnist, run_cli

pytestmark = pytest.mark.slow  # CLI runs (make test-fast leaves them out)

TINY = ["trainer=debug", "trainer.limit_train_batches=2", "trainer.limit_val_batches=1", "logger=none", "callbacks.sample_grid=null"]


@needs_mnist
def test_optuna_sweep_optimises_the_best_ema_error(tmp_path):
    sweep = tmp_path / "optuna"
    proc = run_cli(["-m", "model=triple_gan", "model.pretrain_epochs=1", "model.epochs=1", *TINY, "sweep=optuna_triple_gan",
                    "hydra.sweeper.n_trials=2", f"hydra.sweep.dir={sweep}"], tmp_path / "unused")
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"model.alpha", "model.weights.c_pseudo", "model.optimizer_c.lr"}
    assert 0.3 <= result["best_params"]["model.alpha"] <= 0.7 and 0.0 <= result["best_value"] <= 1.0
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1"]


@needs_mnist
def test_joblib_launcher_runs_the_jobs(tmp_path):
    sweep = tmp_path / "joblib"
    proc = run_cli(["-m", "model=gan", *TINY, "launcher=joblib", "seed=1,2", f"hydra.sweep.dir={sweep}"], tmp_path / "unused")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib" in proc.stdout + proc.stderr
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()


def test_slurm_launcher_preset_composes(tmp_path):
    proc = run_cli(["--cfg", "hydra", "--package", "hydra.launcher", "launcher=slurm"], tmp_path / "unused", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    launcher = yaml.safe_load(proc.stdout)  # printed as the hydra.launcher package
    assert launcher["_target_"].endswith("SlurmLauncher") and launcher["gpus_per_node"] == 1
