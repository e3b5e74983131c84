"""Exact resume: a run killed (SIGKILL) or stopped (SIGTERM) mid-training and resumed ends with the same weights
as an uninterrupted run; checkpoint writes are atomic."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import DATA_ROOT, ROOT, needs_mnist, run_cli, start_cli

from gan_lightning.checkpoints import AtomicCheckpointIO, check_resumable
from gan_lightning.errors import ConfigError

pytestmark = [needs_mnist, pytest.mark.slow, pytest.mark.xdist_group("resume")]  # CLI runs sharing an uninterrupted run
RUN = [
    "model=gan",
    "trainer=debug",
    "trainer.limit_train_batches=40",
    "trainer.max_epochs=3",
    "logger=none",
    "callbacks.sample_grid=null",
]


def _last(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)


def _start(run_dir: Path) -> subprocess.Popen:
    env = {**os.environ, "GAN_LIGHTNING_DATA": str(DATA_ROOT), "GAN_LIGHTNING_REFERENCE": str(run_dir.parent / "none")}
    return subprocess.Popen(
        [sys.executable, "-m", "gan_lightning", *RUN, f"hydra.run.dir={run_dir}"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < end, "no checkpoint appeared"
        time.sleep(0.01)


def _max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.fixture(scope="session")
def uninterrupted_dir(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("resume") / "full"
    proc = run_cli(RUN, run_dir)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="session")
def uninterrupted(uninterrupted_dir):
    return _last(uninterrupted_dir)


@pytest.mark.parametrize(
    "other,expected",
    [
        (
            ["model=dcgan"],
            "holds GAN (MLPGenerator, MLPDiscriminator) on MNISTDataModule (1x28x28 images, 10 classes); "
            "this run is GAN (DCGANGenerator, DCGANDiscriminator) on MNISTDataModule",
        ),
        (
            ["data=fashion_mnist"],
            "this run is GAN (MLPGenerator, MLPDiscriminator) on FashionMNISTDataModule (1x28x28 images, 10 classes)",
        ),
        (
            ["model.generator.hidden=[128,256,512]"],
            "with other networks (generator.net.0.bias is (256,) there and (128,) here)",
        ),
    ],
)
def test_resuming_from_another_game_dataset_or_network_is_one_line(uninterrupted_dir, tmp_path, other, expected):
    ckpt = uninterrupted_dir / "checkpoints" / "last.ckpt"
    proc = run_cli([*RUN, *other, f"ckpt_path={ckpt}"], tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = proc.stderr.strip()
    assert line.count("\n") == 0, line
    assert line.startswith(f"error: ckpt_path={ckpt} "), line
    assert expected in line, line


def test_sigkill_then_resume_with_ckpt_path_last_reaches_the_same_weights(uninterrupted, tmp_path):
    run_dir = tmp_path / "killed"
    proc = _start(run_dir)
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)  # end of epoch 0
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    saved = _last(run_dir)  # a kill never leaves a half-written checkpoint
    assert saved["global_step"] < uninterrupted["global_step"]
    resumed = run_cli([*RUN, "ckpt_path=last"], run_dir)  # the same run directory: its own last.ckpt
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = _last(run_dir)
    assert final["global_step"] == uninterrupted["global_step"]
    assert final["epoch"] == uninterrupted["epoch"]
    # same data order, random streams (restored RNG states), optimizer states: identical on CPU
    assert _max_diff(final["state_dict"], uninterrupted["state_dict"]) == 0.0


def test_sigterm_mid_epoch_saves_and_the_resumed_run_matches(uninterrupted, tmp_path):
    run_dir = tmp_path / "stopped"
    proc = _start(run_dir)
    _wait_for(run_dir / "checkpoints" / "last.ckpt", proc)
    time.sleep(0.5)  # into epoch 1
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "SIGTERM: saved epoch" in err
    assert "resume with ckpt_path=" in err
    saved = _last(run_dir)
    batches_per_epoch = uninterrupted["global_step"] // 3 // 2  # 2 optimizer steps per batch
    assert saved["global_step"] // 2 % batches_per_epoch != 0, "the stop was expected inside an epoch"
    resumed = run_cli([*RUN, f"ckpt_path={run_dir / 'checkpoints' / 'last.ckpt'}"], tmp_path / "resumed")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    final = _last(tmp_path / "resumed")
    assert final["global_step"] == uninterrupted["global_step"]
    assert _max_diff(final["state_dict"], uninterrupted["state_dict"]) == 0.0


def test_checkpoint_write_is_atomic(tmp_path):
    io = AtomicCheckpointIO()
    target = tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    with pytest.raises(
        (AttributeError, TypeError, pickle.PicklingError)
    ):  # fails while writing: the previous file survives
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "bad": lambda: None}, target)
    assert torch.equal(torch.load(target, weights_only=True)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_ckpt_path_last_without_a_checkpoint_is_a_clear_error(tmp_path):
    proc = run_cli([*RUN, "ckpt_path=last"], tmp_path / "fresh")
    assert proc.returncode == 2
    assert "ckpt_path=last: there is no" in proc.stderr
    assert "hydra.run.dir=<its directory>" in proc.stderr
    assert not (tmp_path / "fresh").exists()


def test_unwritable_output_directory_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    proc = run_cli(RUN, blocker / "run")
    assert proc.returncode == 2
    assert proc.stderr.strip() == (
        f"error: hydra.run.dir={blocker / 'run'} cannot be written (Not a directory); "
        "choose another with hydra.run.dir=<dir>"
    )
    assert blocker.read_text() == "not a directory"


def test_corrupt_checkpoint_for_resume_is_a_clear_error(tmp_path):
    broken = tmp_path / "broken.ckpt"
    broken.write_bytes(b"PK\x03\x04 truncated")
    proc = run_cli([*RUN, f"ckpt_path={broken}"], tmp_path / "run")
    assert proc.returncode == 2
    assert f"ckpt_path={broken} is not a readable checkpoint" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_killed_multirun_resumes_skipping_finished_jobs_and_continuing_the_interrupted_one(uninterrupted, tmp_path):
    """A 2-job sweep killed inside job 2, run again with resume=true: job 1 is not trained again (its value still
    returned to the sweeper), job 2 continues from its last.ckpt and ends bit-identical to an uninterrupted run."""
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        *RUN,
        "seed=2,1",
        "optimized_metric=train/d/loss",
        f"hydra.sweep.dir={sweep}",
    ]  # job 2: the default seed
    proc = start_cli(args, tmp_path)
    _wait_for(sweep / "1" / "checkpoints" / "last.ckpt", proc, timeout=240)  # job 2, after its first epoch
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    first = json.loads((sweep / "0" / "result.json").read_text())
    assert not (sweep / "1" / "result.json").exists()
    job1_ckpt = (sweep / "0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns
    resumed = run_cli([*args, "resume=true"], tmp_path / "unused", timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    out = resumed.stdout + resumed.stderr
    assert f"resume=true: {sweep / '0'} finished before" in out
    assert f"resume=true: continuing {sweep / '1'}" in out
    assert (sweep / "0" / "checkpoints" / "last.ckpt").stat().st_mtime_ns == job1_ckpt  # job 1 not trained again
    assert json.loads((sweep / "0" / "result.json").read_text()) == first
    final = _last(sweep / "1")  # job 2 is RUN with seed 1: the session's uninterrupted run
    assert final["global_step"] == uninterrupted["global_step"]
    assert _max_diff(final["state_dict"], uninterrupted["state_dict"]) == 0.0


def test_resume_refuses_a_directory_holding_another_finished_run(uninterrupted_dir, tmp_path):
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted_dir, run_dir)
    (run_dir / "result.json").write_text(json.dumps({"overrides": ["seed=7"], "value": None}))
    proc = run_cli([*RUN, "resume=true"], run_dir)
    assert proc.returncode == 2
    assert "error: resume=true: " in proc.stderr
    assert "holds a finished run of other overrides (seed=7)" in proc.stderr


def _run_config(model: dict | None = None, **data) -> dict:
    game = {"_target_": "gan_lightning.models.triple_gan.TripleGAN", **(model or {})}
    return {"model": game, "data": {"_target_": "gan_lightning.data.MNISTDataModule", "num_classes": 10, **data}}


@pytest.mark.parametrize(
    "stored,current,refused",
    [
        (_run_config(n_labeled=100, label_seed=1), _run_config(n_labeled=100, label_seed=1), None),
        (_run_config(n_labeled=100, label_seed=1), _run_config(n_labeled=100, label_seed=2), "data.label_seed=1"),
        (_run_config(n_labeled=100), _run_config(n_labeled=50), "data.n_labeled=100"),
        # a run of a release where the labeled split was the model's: read in its new place
        (_run_config({"n_labeled": 100}), _run_config(n_labeled=100), None),
        (_run_config({"n_labeled": 100}), _run_config(n_labeled=20), "data.n_labeled=100"),
        (_run_config(), _run_config(n_labeled=20), None),  # older still: it did not say, nothing to compare
        (_run_config(val_size=5000), _run_config(val_size=0), "data.val_size=5000"),
    ],
)
def test_a_resumed_run_keeps_its_labeled_split_and_validation_set(stored, current, refused):
    ckpt = {"run_config": stored, "state_dict": {}}
    if refused is None:
        check_resumable(ckpt, current)
        return
    with pytest.raises(ConfigError, match=rf"was trained with {refused}; this run has data\.") as err:
        check_resumable(ckpt, current)
    assert len(str(err.value).splitlines()) == 1
