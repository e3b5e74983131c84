"""Real subprocess runs of ``python -m gan_lightning``: outputs, TensorBoard events read back, clear errors."""

from __future__ import annotations

import csv
import json
import re

import pytest
from conftest import library_noise, needs_mnist, run_cli
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

pytestmark = pytest.mark.slow  # CLI runs (make test-fast leaves them out)

FAST = ["trainer=debug", "callbacks.progress_bar=null"]


def events(run_dir):
    assert list((run_dir / "tb").glob("events.out.tfevents.*")), f"no event file in {run_dir / 'tb'}"
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    return acc


@needs_mnist
def test_gan_run_writes_config_checkpoint_and_image_grid(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "model=dcgan",
            "data=mnist",
            *FAST,
            "model.generator.base_channels=16",
            "model.discriminator.base_channels=16",
        ],
        run_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (run_dir / ".hydra" / "config.yaml").is_file()
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert sorted(p.name for p in (run_dir / "samples").glob("*.png")) == ["epoch_0000.png", "epoch_0001.png"]
    acc = events(run_dir)
    grids = acc.Images("samples/grid")
    assert [g.step for g in grids] == [0, 1]
    assert grids[0].width > 200
    assert grids[0].height > 200
    assert {"train/d/loss", "train/g/loss", "train/d/D(x)", "train/d/D(G(z))"} <= set(acc.Tags()["scalars"])
    # Lightning's own messages reach the run's log file through Hydra's handlers, once on the console
    log = (run_dir / "__main__.log").read_text()
    assert "`Trainer.fit` stopped" in log
    assert (proc.stdout + proc.stderr).count("`Trainer.fit` stopped") == 1


@needs_mnist
def test_triple_gan_two_epochs_on_real_mnist_with_100_labels(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "model=triple_gan",
            "data=mnist",
            "model.epochs=1",
            "model.schedule.pretrain_epochs=1",
            "trainer=debug",
            "callbacks.progress_bar=null",
        ],
        run_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    indices = json.loads((run_dir / "labeled_indices.json").read_text())
    assert indices["n_labeled"] == 100
    assert len(set(indices["indices"])) == 100
    # the validation set: 5,000 training images, none of them labeled
    assert indices["val_size"] == 5000
    assert len(set(indices["val_indices"])) == 5000
    assert not set(indices["val_indices"]) & set(indices["indices"])
    acc = events(run_dir)
    tags = set(acc.Tags()["scalars"])
    assert {
        "val/err_c",
        "val/err_ema",
        "val/acc_ema",
        "val/best_err_ema",
        "test/err_c",
        "test/err_ema",
        "pretrain/c/loss",
        "train/c/adv",
        "train/d/fake_c",
    } <= tags
    assert not any(t.startswith("test/best") for t in tags)  # no best chosen on the test set
    errs = [e.value for e in acc.Scalars("val/err_c")]
    tests = [e.value for e in acc.Scalars("test/err_c")]
    assert len(errs) == len(tests) == 2
    assert all(0.0 <= e <= 1.0 for e in errs + tests)
    grid = acc.Images("samples/grid")[-1]
    assert grid.height > grid.width * 0.9  # 10 class rows x 10 columns
    assert {"val/confusion_matrix_ema", "test/confusion_matrix_ema"} <= set(acc.Tags()["images"])
    # the best checkpoint is the epoch of the lowest validation error
    best = next((run_dir / "checkpoints").glob("best-epoch*.ckpt"))
    ema = [e.value for e in acc.Scalars("val/err_ema")]
    assert best.name == f"best-epoch{ema.index(min(ema)):04d}.ckpt"  # the first of equal ones


def test_missing_data_is_one_clear_line_and_nothing_is_left(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["model=gan", "data.download=false", *FAST], run_dir, data_root=tmp_path / "empty")
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.strip().splitlines() if line]
    assert lines[-1].startswith("error: dataset not found under data root")
    assert "train-images-idx3-ubyte" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert not run_dir.exists()


@pytest.mark.parametrize(
    "args,expected",
    [
        (["model=nope"], "Could not find 'model/nope'"),
        (["data=stl10"], "Could not find 'data/stl10'"),
    ],
)
def test_unknown_group_values_list_the_choices(tmp_path, args, expected):
    proc = run_cli(args, tmp_path / "run")
    assert proc.returncode == 2
    assert expected in proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert "triple_gan" in proc.stderr or "mnist" in proc.stderr  # Hydra lists the available options


@pytest.mark.parametrize(
    "args,expected",
    [
        (["model.latent_dimm=3"], "error: Could not override 'model.latent_dimm'"),  # Hydra's composition error
        (["model.latent_dim=abc"], "error: model.latent_dim='abc': expects an integer"),  # checked from the signature
        (["+model.noise=1"], "error: model.noise: TripleGAN has no such setting"),
        # keys of earlier releases name where they moved
        (
            ["epochs=3"],
            "error: epochs: moved to model.epochs",
        ),
        (
            ["model=gan", "data.streams.real.batch_size=8"],
            "error: data.streams.real.batch_size: the games' batch sizes moved to model.batch_sizes.<stream>, "
            "e.g. model.batch_sizes.d_unlabeled=200",
        ),
    ],
)
def test_unknown_keys_and_wrong_types_are_one_line_with_exit_2(tmp_path, args, expected):
    proc = run_cli([*args, "trainer=debug"], tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip().startswith(expected)
    assert proc.stderr.strip().count("\n") == 0
    assert not (tmp_path / "run").exists()


def test_model_that_cannot_take_the_data_shape(tmp_path):
    proc = run_cli(["model=dcgan", "data=mnist", "data.image_shape=[1,30,30]"], tmp_path / "run")
    assert proc.returncode == 2
    assert "error:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_help_lists_the_config_groups(tmp_path):
    proc = run_cli(["--help"], tmp_path / "run")
    assert proc.returncode == 0
    for group in ("model:", "data:", "trainer:", "experiment:", "triple_gan", "dcgan", "fashion_mnist"):
        assert group in proc.stdout


@needs_mnist
def test_multirun_sweep_and_its_summary_table(tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        [
            "-m",
            "model=classifier",
            "trainer=debug",
            "trainer.max_epochs=1",
            "callbacks.progress_bar=null",
            "model.optimizer.lr=1e-3,3e-4",
            "seed=1,2",
            f"hydra.sweep.dir={sweep}",
        ],
        tmp_path / "unused",
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    proc = run_cli(["task=summary", f"task.dir={sweep}"], tmp_path / "summary_run")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert library_noise(proc.stdout + proc.stderr) == []  # a task's console too
    rows = list(csv.DictReader((sweep / "summary.csv").open()))
    assert len(rows) == 2
    assert sorted(float(r["overrides"].split("model.optimizer.lr=")[1]) for r in rows) == [
        3e-4,
        1e-3,
    ]
    assert all(r["runs"] == "2" for r in rows)
    errs = [float(r["val/best_err_ema"]) for r in rows]
    assert errs == sorted(errs)
    assert all(0 <= e <= 1 for e in errs)
    assert all(0 <= float(r["test/err_ema"]) <= 1 for r in rows)  # the test error shown beside it
    png = (sweep / "summary.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    assert "| overrides | runs |" in proc.stdout
    assert (
        "Every run: `model=classifier trainer=debug trainer.max_epochs=1 callbacks.progress_bar=null`" in proc.stdout
    )  # shared, shown once
    assert all(r["overrides"].startswith("model.optimizer.lr=") for r in rows)


def test_summary_of_a_missing_directory_is_a_clear_error(tmp_path):
    proc = run_cli(["task=summary", f"task.dir={tmp_path / 'nope'}"], tmp_path / "run")
    assert proc.returncode == 2
    assert "is not a directory" in proc.stderr


@needs_mnist
def test_resume_from_a_checkpoint_continues_where_it_stopped(tmp_path):
    first, second = tmp_path / "first", tmp_path / "second"
    proc = run_cli(
        ["model=triple_gan", *FAST, "model.schedule.pretrain_epochs=1", "trainer.max_epochs=1"], first
    )  # pre-training
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run_cli(
        [
            "model=triple_gan",
            *FAST,
            "model.schedule.pretrain_epochs=1",
            "trainer.max_epochs=2",
            f"ckpt_path={first / 'checkpoints' / 'last.ckpt'}",
        ],
        second,
    )  # then the game's first epoch
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in (second / "samples").glob("*.png")) == ["epoch_0001.png"]  # only the new epoch ran
    import torch

    ckpt = torch.load(second / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1
    assert len(ckpt["optimizer_states"]) == 4
    assert "run_config" in ckpt
    assert any(k.startswith("ema.") for k in ckpt["state_dict"])
    # task=sample on the pre-training's checkpoint says in one line that G is untrained; on the game's it says nothing
    for run, note in (
        (first, "was saved in epoch 1 of C's pre-training (1 epoch): its generator has not been trained yet"),
        (second, None),
    ):
        ckpt_path = run / "checkpoints" / "last.ckpt"
        shown = run_cli(["task=sample", f"ckpt_path={ckpt_path}", "task.n=4"], tmp_path / f"sample_{run.name}")
        assert shown.returncode == 0, shown.stderr[-3000:]
        notes = [line for line in shown.stderr.splitlines() if line.startswith("note:")]
        assert notes == ([f"note: ckpt_path={ckpt_path} {note}, so its images are noise"] if note else [])
        assert (tmp_path / f"sample_{run.name}" / "classes.png").is_file()  # written all the same


def test_missing_checkpoint_is_a_clear_error(tmp_path):
    proc = run_cli(["model=gan", *FAST, f"ckpt_path={tmp_path / 'nope.ckpt'}"], tmp_path / "run")
    assert proc.returncode == 2
    assert "does not exist" in proc.stderr


@needs_mnist
def test_non_positive_learning_rate_is_rejected_before_anything_runs(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(["model=gan", "model.optimizers.g.lr=-1", *FAST], run_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: model.optimizers.g.lr=-1 must be positive"
    assert not run_dir.exists()


@needs_mnist
@pytest.mark.parametrize(
    "args,expected",
    [
        (
            ["model=classifier"],
            "error: trainer.cuda_graphs=true is supported by the games (model=triple_gan, gan, dcgan, cgan, cdcgan, "
            "maxout_gan), not by Classifier",
        ),
        (
            ["model=gan"],
            (
                "error: trainer.cuda_graphs=true needs a CUDA GPU (trainer=gpu) and none is visible; "
                "without one add trainer.cuda_graphs=false"
            ),
        ),
        (
            ["model=triple_gan", "trainer.accelerator=cpu"],
            (
                "error: trainer.cuda_graphs=true needs a CUDA GPU (trainer=gpu) and none is visible; "
                "without one add trainer.cuda_graphs=false"
            ),
        ),
    ],
)
def test_cuda_graphs_where_they_cannot_run_is_a_clear_error(tmp_path, args, expected):
    run_dir = tmp_path / "run"
    proc = run_cli([*args, *FAST, "trainer.cuda_graphs=true"], run_dir)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == expected
    assert not run_dir.exists()


@needs_mnist
def test_csv_logger_gets_the_metrics_and_the_config(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_cli(
        [
            "model=triple_gan",
            "logger=tensorboard_csv",
            *FAST,
            "model.schedule.pretrain_epochs=1",
            "model.pretrain_batch_sizes.c_unlabeled=50",
            "model.batch_sizes.c_unlabeled=50",
            "model.batch_sizes.d_unlabeled=50",
        ],
        run_dir,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    errors = [float(r["val/err_ema"]) for r in rows if r.get("val/err_ema")]
    assert len(errors) == 2
    assert all(0.0 <= e <= 1.0 for e in errors)
    final = [r for r in rows if r.get("hparam/val/err_ema")]
    assert len(final) == 1
    assert float(final[0]["hparam/val/err_ema"]) == pytest.approx(errors[-1])
    assert "model/alpha: 0.5" in (run_dir / "csv" / "hparams.yaml").read_text()
    assert "val/err_ema" in events(run_dir).Tags()["scalars"]


@needs_mnist
@pytest.mark.parametrize("model", ["triple_gan", "dcgan"])
def test_a_run_prints_no_python_warning(tmp_path, model):
    """Every warning a user cannot act on is filtered in one place (gan_lightning/__main__.py, each with its reason);
    anything else printed by a plain run fails here."""
    proc = run_cli(
        [f"model={model}", "trainer=debug", "model.schedule.pretrain_epochs=1"]
        if model == "triple_gan"
        else [f"model={model}", "trainer=debug"],
        tmp_path / "run",
        fresh=model == "triple_gan",  # one fresh interpreter: the import-time warnings, the same for every model
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert library_noise(proc.stdout + proc.stderr) == []
    # the model summary: one row per network with parameters, no column or total that is all zeros
    out = proc.stdout + proc.stderr
    assert "generator" in out
    assert "discriminator" in out
    assert re.search(r"parameters: [\d.]+ [KM]? ?trained", out)
    assert "FLOPs" not in out
    assert "ModuleDict" not in out
    assert not re.search(r"│\s+0 │", out)
    assert "model summary" not in out


@needs_mnist
def test_default_trainer_sizes_itself_to_this_machine(tmp_path):
    """The default trainer: bf16-mixed exactly where the CPU multiplies bf16 natively; the schedule and the ETA
    printed."""
    from gan_lightning.hardware import cpu_has_native_bf16

    proc = run_cli(
        ["model=gan", "model.epochs=1", "trainer.limit_train_batches=30", "trainer.limit_val_batches=1", "logger=none"],
        tmp_path / "run",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout + proc.stderr
    assert ("Using bfloat16 Automatic Mixed Precision" in out) == cpu_has_native_bf16()
    assert "schedule: training 1 epochs x 30 iterations = 30 iterations" in out
    assert re.search(
        r"training: [\d.]+ it/s; the rest of the run \(\d+ iterations\) would take \d+:\d\d:\d\d at this speed", out
    )


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("model,graphed", [("triple_gan", True), ("gan", False)])  # auto: where measured faster
def test_cuda_graphs_are_chosen_on_a_gpu(tmp_path, model, graphed):
    from conftest import compose_cfg

    from gan_lightning.tasks.train import build

    _datamodule, game, _trainer = build(compose_cfg([f"model={model}", "trainer.accelerator=gpu"], output_dir=tmp_path))
    assert (getattr(game, "iteration_recorder", None) is not None) is graphed


@pytest.mark.parametrize(
    "override,expected",
    [
        ("trainer.log_every_n_steps=-3", "error: trainer.log_every_n_steps=-3 must be a whole number >= 0"),
        ("trainer.check_val_every_n_epoch=0", "error: trainer.check_val_every_n_epoch=0 must be a whole number >= 1"),
        (
            "trainer.max_time=00:-1:00:00",
            "error: trainer.max_time='00:-1:00:00' must be a positive duration DD:HH:MM:SS (e.g. "
            "00:01:00:00 for an hour), a mapping of days, hours, minutes, seconds, or null",
        ),
        (
            "trainer.max_time=1h",
            "error: trainer.max_time='1h' must be a positive duration DD:HH:MM:SS (e.g. 00:01:00:00 for an "
            "hour), a mapping of days, hours, minutes, seconds, or null",
        ),
    ],
)
def test_a_bad_trainer_count_is_one_line_before_training(tmp_path, override, expected):
    proc = run_cli(["model=gan", override, *FAST], tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == expected, proc.stderr[-2000:]
    assert not (tmp_path / "run" / "checkpoints").exists()


@needs_mnist
def test_a_presets_options_for_a_callback_left_out_are_one_line(tmp_path):
    """The fast preset tunes the generator metrics; with callbacks=none there are none to tune: one line, not a
    callback built from a bare dict that fails inside the fit."""
    proc = run_cli(["experiment=triple_gan_mnist100_fast", "callbacks=none"], tmp_path / "run")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.strip() == (
        "error: callbacks.generator_metrics sets every_n_epochs, n_samples, but this run has no "
        "callbacks.generator_metrics (the callbacks option chosen leaves it out): drop it with "
        "~callbacks.generator_metrics"
    )
    assert not (tmp_path / "run" / "checkpoints").exists()
