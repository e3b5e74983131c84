"""Sweeper and launcher presets: Optuna optimises a logged metric, joblib runs jobs in parallel, SLURM composes."""

from __future__ import annotations

import time

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
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2 and all(j.startswith("trial_") for j in jobs)  # named by their parameters' digest
    assert all("model.alpha=" in (sweep / j / ".hydra" / "overrides.yaml").read_text() for j in jobs)


@needs_mnist
def test_a_stopped_optuna_study_resumes_with_its_storage(tmp_path):
    """Killed inside trial 2, then run again with resume=true: trial 1 is not trained again, trial 2's parameters are
    asked again and its job continues from its last.ckpt; the study ends with two finished trials."""
    import os
    import signal
    import subprocess
    import sys

    import optuna
    from conftest import DATA_ROOT, ROOT

    sweep, storage = tmp_path / "optuna", f"sqlite:///{tmp_path / 'study.db'}"
    args = ["-m", "model=triple_gan", "model.pretrain_epochs=1", "model.epochs=2", *TINY, "trainer.limit_train_batches=6",
            "trainer.max_epochs=3", "sweep=optuna_triple_gan", "hydra.sweeper.n_trials=2", f"hydra.sweeper.storage={storage}",
            f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "GAN_LIGHTNING_DATA": str(DATA_ROOT), "GAN_LIGHTNING_REFERENCE": str(tmp_path / "none")}
    proc = subprocess.Popen([sys.executable, "-m", "gan_lightning", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not (len(list(sweep.glob("*/result.json"))) == 1 and len(list(sweep.glob("*/checkpoints/last.ckpt"))) == 2):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # inside trial 2, after its first epoch
    proc.communicate()
    finished = next(sweep.glob("*/result.json")).parent
    stamp = (finished / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    resumed = run_cli([*args, "resume=true"], tmp_path / "unused", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout + resumed.stderr
    assert "holds 1 finished trials; 1 interrupted asked again; 1 to run" in out and "continuing" in out
    assert (finished / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp  # trial 1 not trained again
    study = optuna.load_study(study_name="triple_gan", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"] and len(list(sweep.glob("*/result.json"))) == 2
    assert (sweep / "optimization_results.yaml").is_file()


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
