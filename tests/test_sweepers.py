"""Sweeper and launcher presets: Optuna optimises a logged metric, joblib runs jobs in parallel, SLURM composes."""

from __future__ import annotations

import time

import pytest
import yaml
from conftest import needs_mnist, run_cli, start_cli

pytestmark = pytest.mark.slow  # CLI runs (make test-fast leaves them out)

TINY = [
    "trainer=debug",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "logger=none",
    "callbacks.sample_grid=null",
]


@needs_mnist
def test_optuna_sweep_optimises_the_best_ema_error(tmp_path):
    sweep = tmp_path / "optuna"
    proc = run_cli(
        [
            "-m",
            "model=triple_gan",
            "model.schedule.pretrain_epochs=1",
            "model.epochs=1",
            *TINY,
            "sweep=optuna_triple_gan",
            "hydra.sweeper.n_trials=2",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path / "unused",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    assert set(result["best_params"]) == {"model.alpha", "model.weights.c_pseudo", "model.optimizers.c.lr"}
    assert 0.3 <= result["best_params"]["model.alpha"] <= 0.7
    assert 0.0 <= result["best_value"] <= 1.0
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir())
    assert len(jobs) == 2
    assert all(j.startswith("trial_") for j in jobs)
    assert all("model.alpha=" in (sweep / j / ".hydra" / "overrides.yaml").read_text() for j in jobs)
    import optuna

    study = optuna.load_study(
        study_name="triple_gan", storage=f"sqlite:///{sweep / 'optuna.db'}"
    )  # the sweep's own storage
    assert [sorted(t.intermediate_values) for t in study.trials] == [
        [0, 1],
        [0, 1],
    ]  # each epoch's val/err_ema reported


@needs_mnist
def test_a_stopped_optuna_study_resumes_with_its_storage(tmp_path):
    """Killed inside trial 2, then run again with resume=true: trial 1 is not trained again, trial 2's parameters are
    asked again and its job continues from its last.ckpt; the study ends with two finished trials."""
    import signal

    import optuna

    sweep, storage = tmp_path / "optuna", f"sqlite:///{tmp_path / 'study.db'}"
    args = [
        "-m",
        "model=triple_gan",
        "model.schedule.pretrain_epochs=1",
        "model.epochs=2",
        *TINY,
        "trainer.limit_train_batches=6",
        "trainer.max_epochs=3",
        "sweep=optuna_triple_gan",
        "hydra.sweeper.n_trials=2",
        f"hydra.sweeper.storage={storage}",
        f"hydra.sweep.dir={sweep}",
    ]
    proc = start_cli(args, tmp_path)
    deadline = time.time() + 300
    while not (len(list(sweep.glob("*/result.json"))) == 1 and len(list(sweep.glob("*/checkpoints/last.ckpt"))) == 2):
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < deadline, proc.communicate()[1][-2000:]
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # inside trial 2, after its first epoch
    proc.communicate()
    finished = next(sweep.glob("*/result.json")).parent
    stamp = (finished / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    resumed = run_cli([*args, "resume=true"], tmp_path / "unused", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    out = resumed.stdout + resumed.stderr
    assert "holds 1 finished trials; 1 interrupted asked again; 1 to run" in out
    assert "continuing" in out
    assert (finished / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamp  # trial 1 not trained again
    study = optuna.load_study(study_name="triple_gan", storage=storage)
    states = sorted(t.state.name for t in study.trials)
    assert states == ["COMPLETE", "COMPLETE", "FAIL"]
    assert len(list(sweep.glob("*/result.json"))) == 2
    assert (sweep / "optimization_results.yaml").is_file()


@needs_mnist
def test_joblib_launcher_runs_the_jobs_and_a_resumed_sweep_skips_the_finished_ones(tmp_path):
    sweep = tmp_path / "joblib"
    proc = run_cli(
        ["-m", "model=gan", *TINY, "launcher=joblib", "seed=1,2", f"hydra.sweep.dir={sweep}"], tmp_path / "unused"
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Joblib" in proc.stdout + proc.stderr
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
    # the same sweep again with resume=true: both jobs finished, neither is trained again (one job at a time: joblib
    # then runs them in the launching process, without starting workers that would only skip them)
    stamps = {job: (sweep / job / "checkpoints" / "last.ckpt").stat().st_mtime_ns for job in ("0", "1")}
    sequential = ["launcher=joblib", "hydra.launcher.n_jobs=1"]
    again = run_cli(
        ["-m", "model=gan", *TINY, *sequential, "seed=1,2", f"hydra.sweep.dir={sweep}", "resume=true"],
        tmp_path / "unused",
    )
    assert again.returncode == 0, again.stderr[-3000:]
    for job in ("0", "1"):
        assert f"resume=true: {sweep / job} finished before" in again.stdout + again.stderr
        assert (sweep / job / "checkpoints" / "last.ckpt").stat().st_mtime_ns == stamps[job]


def test_slurm_launcher_preset_composes(tmp_path):
    proc = run_cli(
        ["--cfg", "hydra", "--package", "hydra.launcher", "launcher=slurm"], tmp_path / "unused", timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    launcher = yaml.safe_load(proc.stdout)  # printed as the hydra.launcher package
    assert launcher["_target_"].endswith("SlurmLauncher")
    assert launcher["gpus_per_node"] == 1


def test_the_pruning_callback_reports_each_epoch_and_stops_a_trial_worse_than_the_median(tmp_path):
    from types import SimpleNamespace

    import optuna
    import torch

    from gan_lightning.callbacks import OptunaPruning

    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="s", storage=storage)
    for errs in ([0.10, 0.05, 0.03], [0.12, 0.06, 0.04]):  # two finished trials (the median pruner's start-up)
        trial = study.ask()
        for epoch, err in enumerate(errs):
            trial.report(err, epoch)
        study.tell(trial, errs[-1])

    def run(errs):
        number = study.ask().number
        callback = OptunaPruning(
            monitor="val/err_ema", pruner="median", warmup_epochs=1, storage=storage, study_name="s", trial=number
        )
        trainer = SimpleNamespace(
            is_global_zero=True, sanity_checking=False, should_stop=False, current_epoch=0, callback_metrics={}
        )
        callback.setup(trainer, None, "fit")
        for epoch, err in enumerate(errs):
            trainer.current_epoch, trainer.callback_metrics = epoch, {"val/err_ema": torch.tensor(err)}
            callback.on_validation_end(trainer, None)
            if trainer.should_stop:
                break
        return number, callback.pruned_at, trainer.should_stop

    good = run([0.09, 0.05, 0.03])
    assert good[1:] == (None, False)
    bad = run([0.50, 0.40, 0.30])
    assert bad[1:] == (1, True)  # epoch 0 is the warm-up; at epoch 1 it is worse than the median (0.055)
    stored = optuna.load_study(study_name="s", storage=storage).trials
    assert stored[bad[0]].intermediate_values == pytest.approx({0: 0.5, 1: 0.4})
    assert stored[bad[0]].user_attrs["pruned_at_epoch"] == 1
    with pytest.raises(Exception, match="needs a study storage"):
        OptunaPruning(trial=3, storage=None)
    with pytest.raises(Exception, match="nothing is chosen by the test set"):
        OptunaPruning(monitor="test/err_ema")
