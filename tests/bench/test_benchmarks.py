"""The MNIST-100 benchmark: its summary over labeled splits, and a real (tiny) run on two splits."""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys

import pytest
from conftest import ROOT, compose_cfg, library_noise, needs_mnist

from bench import mnist100, split_errors
from bench.mnist100 import combine, summary_table

pytestmark = pytest.mark.slow  # CLI runs (make test-fast leaves them out)


def _result(run: str, label_seed: int, errs: list[float]) -> dict:
    curve = [
        {
            "run": run,
            "label_seed": label_seed,
            "wall_s": 60.0 * (i + 1),
            "epoch": i,
            "step": i,
            "err_c": e + 0.001,
            "err_ema": e,
        }
        for i, e in enumerate(errs)
    ]
    return {
        "run": run,
        "label_seed": label_seed,
        "wall_s": 60.0 * len(errs),
        "curve": curve,
        "final_err_c": errs[-1] + 0.001,
        "final_err_ema": errs[-1],
        "best_err_ema": min(errs),
    }


def test_summary_table_mean_and_sd_over_splits() -> None:
    results = [
        _result("fast", 1, [0.03, 0.0218]),
        _result("fast", 2, [0.02, 0.0120]),
        _result("fast", 3, [0.016, 0.0150]),
        _result("baseline", 1, [0.13]),
    ]
    for r, (acc, fid) in zip(results, [(0.90, 8.0), (0.95, 6.0), (0.97, 4.0)]):  # the generator's final metrics
        r.update(final_ema_c_acc=acc - 0.01, final_cond_acc=acc, final_fid=fid)
    # the validation error at the last epoch: read from the curve (a report written before the key existed) or the key
    results[0]["curve"][-1]["val_err_ema"], results[1]["curve"][-1]["val_err_ema"] = 0.025, 0.015
    results[2]["final_val_err_ema"] = 0.020
    lines = summary_table(results).splitlines()
    assert len(lines) == 2 + 4 + 1  # header, one row per result, one mean row (the baseline has a single split)
    assert lines[2].startswith("| fast | 1 | 2.0 | 2 | 2.50 % | 2.28 % | 2.18 % | 2.18 % |")
    mean_row = lines[-1]
    assert mean_row.startswith("| fast, mean ± SD | 3 splits |")
    # by hand: EMA C ends at 2.18, 1.20, 1.50 % (mean 1.627, SD 0.502); C 0.1 point above; the best EMA C is the last
    # G: conditional accuracy 90, 95, 97 % (mean 94.0, SD 3.61), FID 8, 6, 4 (mean 6.00, SD 2.00); the baseline has no G
    assert mean_row.endswith(  # validation: 2.5, 1.5, 2.0 % (mean 2.00, SD 0.50)
        "| 2.00 ± 0.50 % | 1.73 ± 0.50 % | 1.63 ± 0.50 % | 1.63 ± 0.50 % "
        "| 93.00 ± 3.61 % | 94.00 ± 3.61 % | 6.00 ± 2.00 |"
    )
    assert lines[2].endswith("| 89.00 % | 90.00 % | 8.00 |")
    assert lines[5].endswith("| – | – | – |")


def test_combine_reports_of_separate_splits(tmp_path) -> None:
    old = {"meta": {"seed": 1}, "results": [_result("fast", 1, [0.0218])]}
    del old["results"][0]["label_seed"]  # a report written before labeled splits were recorded: the default split
    new = {
        "meta": {"seed": 1, "label_seeds": [2, 3]},
        "results": [_result("fast", 2, [0.0120]), _result("fast", 3, [0.0150])],
    }
    (tmp_path / "a.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps(new))
    combine([tmp_path / "a.json", tmp_path / "b.json"], tmp_path / "out" / "all")
    table = (tmp_path / "out" / "all.md").read_text()
    assert (
        "| fast, mean ± SD | 3 splits | | | – | 1.73 ± 0.50 % | 1.63 ± 0.50 % | 1.63 ± 0.50 % |" in table
    )  # no val. error
    assert [r["label_seed"] for r in json.loads((tmp_path / "out" / "all.json").read_text())["results"]] == [1, 2, 3]
    with pytest.raises(SystemExit, match="run fast on split 2 is in both"):
        combine([tmp_path / "b.json", tmp_path / "b.json"], tmp_path / "out" / "twice")
    assert not (tmp_path / "out" / "twice.md").exists()


@needs_mnist
def test_bench_runs_each_split(tmp_path, data_root, monkeypatch, capfd) -> None:
    """Two labeled splits side by side, each run pinned to a core of its own (``--parallel``, as a study runs them;
    one after the other where this process may use a single core)."""
    out = tmp_path / "results"
    parallel = len(os.sched_getaffinity(0)) >= 2
    monkeypatch.setenv("GAN_LIGHTNING_DATA", str(data_root))
    mnist100.main(
        [
            "--runs",
            "triple_gan_fast",
            "--label-seeds",
            "2",
            "3",
            *(["--parallel"] if parallel else []),
            "--out",
            str(out),
            "--extra",
            "model.schedule.pretrain_epochs=1",
            "model.epochs=1",
            "trainer.limit_train_batches=2",
            "trainer.log_every_n_steps=1",  # a 2-batch epoch logs its steps (the default interval is longer)
            "trainer.precision=32-true",
            # the preset's generator metrics, on a few samples: the benchmark's columns are read, not their quality
            "trainer.limit_val_batches=1",
            "callbacks.generator_metrics.n_samples=200",
            "callbacks.generator_metrics.n_real=500",
            "callbacks.generator_metrics.per_class=false",
            "model.schedule.trigger_samples=100",
        ]
    )
    runs = out / "runs" / ("mnist100_parallel" if parallel else "mnist100")
    console = capfd.readouterr()
    logs = "".join(p.read_text() for p in runs.glob("*.log"))  # side by side, each run writes its own log
    assert library_noise(console.out + console.err + logs) == []  # the benchmark's console and its runs'
    assert console.out.count("$ ") == 2
    if parallel:  # pinned to one core each
        assert console.out.count("taskset -c") == 2
        assert len(list(runs.glob("*.log"))) == 2
    splits = {
        ls: json.loads((runs / f"triple_gan_fast_labels{ls}" / "labeled_indices.json").read_text()) for ls in (2, 3)
    }
    assert [splits[ls]["label_seed"] for ls in (2, 3)] == [2, 3]
    assert splits[2]["indices"] != splits[3]["indices"]
    assert len(splits[2]["indices"]) == 100
    stem = out / ("mnist100_triple_gan_fast" + ("_parallel" if parallel else "") + "_labels2_3")
    rows = list(csv.DictReader(stem.with_suffix(".csv").open()))
    assert {r["label_seed"] for r in rows} == {"2", "3"}
    assert {r["run"] for r in rows} == {"triple_gan_fast"}
    assert len(rows) == 2 * 2  # two epochs (one of pre-training, one of the game) per split
    report = json.loads(stem.with_suffix(".json").read_text())
    assert report["meta"]["label_seeds"] == [2, 3]
    finals = [r["final_err_ema"] for r in report["results"]]
    assert finals == [float(rows[1]["err_ema"]), float(rows[3]["err_ema"])]
    assert "| triple_gan_fast, mean ± SD | 2 splits |" in stem.with_suffix(".md").read_text()
    png = stem.with_suffix(".png").read_bytes()  # the error curves, one line per split
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    # where the trained classifiers err on their validation sets (bench.split_errors), from the same two runs
    dirs = [runs / f"triple_gan_fast_labels{ls}" for ls in (2, 3)]
    errors = tmp_path / "split_errors"
    args = ["--runs", *map(str, dirs), "--out", str(errors), "--data", str(data_root)]
    docs = {path: (ROOT / path).read_bytes() for path in split_errors.FIGURES}
    split_errors.main(args)  # written elsewhere than the study's own analysis: its figures beside it, not the docs'
    assert all((ROOT / path).read_bytes() == png for path, png in docs.items())
    analysed = json.loads(errors.with_suffix(".json").read_text())
    for ls, run_dir in zip((2, 3), dirs):
        r, split = analysed[run_dir.name], splits[ls]
        wrong = set(r["wrong_indices"])
        assert len(wrong) == round(r["val_err_ema"] * 5000)
        assert wrong <= set(split["val_indices"])  # validation images only, none of them labeled
        assert sum(r["val_err_per_class"]) / 10 == pytest.approx(r["val_err_ema"], abs=1e-3)  # balanced classes
        assert {c["index"] for c in r["culprits"]} <= set(split["indices"])  # culprits are labeled images
        assert sum(t != p for t, p, _ in r["confusions"]) == len(r["confusions"])
        assert len(r["g_cond_acc_per_class"]) == 10  # one game epoch played: G and D are analysed
        assert 0.0 <= r["d_prefers_true_label"] <= 1.0
        assert r["wrong_in_every_run"] == len(wrong & set(analysed[dirs[1 - (ls - 2)].name]["wrong_indices"]))
    assert errors.with_suffix(".md").read_text().count("| triple_gan_fast_labels") == 2
    for r in analysed.values():
        assert set(r["labeled_indices"]) == set(splits[2 if "labels2" in r["run_dir"] else 3]["indices"])
    # the top confusion of each run
    assert (tmp_path / "split_errors_confusions.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the two barely trained runs share thousands of mistakes; the figure shows the first FIGURE_MAX (10 rows)
    assert min(r["wrong_in_every_run"] for r in analysed.values()) > split_errors.FIGURE_MAX
    png = (tmp_path / "split_errors.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert int.from_bytes(png[20:24], "big") <= 10 * 1.15 * 120 + 0.4 * 120  # its height in pixels: 10 rows at most


def test_every_mnist100_run_composes_and_builds_its_game() -> None:
    """The benchmark's named runs (the presets, the ablation, the candidates) compose, pass the checks and build: a
    mistake in one shows here, not an hour into a study."""
    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from torch import nn

    from bench.mnist100 import RUNS
    from gan_lightning.config_check import check_config
    from gan_lightning.nets.blocks import RandomAffine, RandomErase

    games = {}
    for name, overrides in RUNS.items():
        cfg = compose_cfg(overrides)
        check_config(OmegaConf.to_container(cfg, resolve=True))
        games[name] = instantiate(cfg.model)
    preset, affine = games["triple_gan_fast"], games["triple_gan_fast_affine"]
    assert isinstance(preset.additions.augment, nn.Sequential)  # C's own view: the affine map, then cutout
    assert [type(m) for m in preset.additions.augment] == [RandomAffine, RandomErase]
    assert isinstance(preset.additions.teacher_augment, RandomAffine)  # the teacher's: the affine map only
    assert preset.g_ema is not None
    assert isinstance(affine.additions.augment, RandomAffine)  # the preset before cutout
    assert affine.additions.teacher_augment is None
    assert affine.g_ema is None


def test_every_report_experiment_composes_and_passes_the_checks(tmp_path) -> None:
    from omegaconf import OmegaConf

    from bench.experiments import STUDIES, commands
    from gan_lightning.config_check import check_config

    n = 0
    for study in STUDIES:
        runs = commands(study, 5, [1, 2], tmp_path)
        assert len(runs) == 2 * len(STUDIES[study][1])
        assert len({str(d) for _, _, d, _ in runs}) == len(runs)
        for _, seed, _, cmd in runs[::2]:  # one seed per setting: the other differs only in `seed`
            overrides = [a for a in cmd[3:] if not a.startswith("hydra.")]
            cfg = compose_cfg(overrides)
            check_config(OmegaConf.to_container(cfg, resolve=True))
            assert cfg.seed == seed
            assert (cfg.trainer.max_time == "00:00:05:00") == STUDIES[study][0]
            n += 1
    assert n >= 20


def test_experiment_report_reads_the_runs_back(tmp_path) -> None:
    """A study's table: the last value of each metric per run, mean ± SD over the seeds, iterations, and its grids."""
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    from bench.experiments import report

    results = []
    for setting, seed, fids in [
        ("cGAN", 1, [40.0, 30.0]),
        ("cGAN", 2, [50.0, 20.0]),
        ("cDCGAN", 1, [9.0, 5.0]),
        ("cDCGAN", 2, [8.0, 7.0]),
    ]:
        run_dir = tmp_path / "runs" / f"{setting}_s{seed}"
        with SummaryWriter(str(run_dir / "tb")) as writer:
            for step, fid in zip((100, 200 * seed), fids):
                writer.add_scalar("gen/fid", fid, step)
                writer.add_scalar("train/d/loss", 1.0, step + 1)
        (run_dir / "samples").mkdir()
        for epoch in range(5):
            Image.new("L", (20, 20), 50 * epoch).save(run_dir / "samples" / f"epoch_{epoch:04d}.png")
        results.append({"setting": setting, "seed": seed, "run_dir": str(run_dir), "wall_s": 1.0})
    report("cgan_vs_cdcgan", {"minutes": 3}, results, tmp_path, tmp_path / "images")
    lines = (tmp_path / "experiments_cgan_vs_cdcgan.md").read_text().splitlines()
    png = (tmp_path / "experiments_cgan_vs_cdcgan.png").read_bytes()  # FID against wall time, a line per run
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(png) > 5000
    # the last FID of each run: cGAN 30 and 20 (mean 25, SD 7.07); cDCGAN 5 and 7 (6, 1.41); optimizer steps 201 and 401
    assert "| cGAN (2 seeds) | 301 | 25.00 ± 7.07 |" in lines
    assert "| cDCGAN (2 seeds) | 301 | 6.00 ± 1.41 |" in lines
    last = Image.open(tmp_path / "images" / "cgan_vs_cdcgan_cGAN.png")
    assert last.getpixel((0, 0)) == 200  # the last epoch's grid of the first seed
    over = Image.open(tmp_path / "images" / "cgan_vs_cdcgan_cDCGAN_over_training.png")
    # four of the five epochs (0, 1, 3, 4) in one row, 8 white pixels around each: the last grid starts at
    # x = 8 + 3 * 28
    assert over.size == (4 * 20 + 5 * 8, 20 + 2 * 8)
    assert over.getpixel((0, 0)) == (255, 255, 255)
    assert [over.getpixel((8 + i * 28, 8)) for i in range(4)] == [(v, v, v) for v in (0, 50, 150, 200)]


def _speed_smoke(tmp_path, *options: str) -> subprocess.CompletedProcess:
    """``bench.speed`` on the MLP GAN in fp32 with one warm-up iteration and ``options``, tagged ``smoke``."""
    cmd = [sys.executable, "-m", "bench.speed", "--models", "gan", "--warmup", "1", *options]
    cmd += ["--out", str(tmp_path), "--tag", "smoke", "trainer.precision=32-true"]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc


def test_speed_benchmark_writes_its_table_with_the_cpu_flags(tmp_path) -> None:
    """``bench.speed`` runs the plain loop and the framework side by side and records both, with the CPU's flags and
    the matmul peak measured before each repeat (read back, not timed)."""
    proc = _speed_smoke(tmp_path, "--iters", "2", "--repeats", "2", "--peak-size", "512")
    assert library_noise(proc.stdout + proc.stderr) == []
    report = json.loads((tmp_path / "speed_cpu_smoke.json").read_text())
    assert {"avx512_bf16", "amx_bf16", "torch_threads", "matmul_peak_gflop_s"} <= set(report["meta"])
    assert report["meta"]["matmul_peak_size"] == 512
    (row,) = report["rows"]
    assert row["model"] == "gan"
    assert len(row["plain_it_s"]["runs"]) == len(row["framework_it_s"]["runs"]) == 2
    assert len(row["peaks_flop_s"]) == 2
    assert row["peak_flop_s"] == pytest.approx(statistics.median(row["peaks_flop_s"]))
    assert row["speedup"] == pytest.approx(row["framework_it_s"]["median"] / row["plain_it_s"]["median"])
    bare = row["bare_framework_step_it_s"]  # the game's own iteration without Lightning
    assert len(bare["runs"]) == 2
    assert row["lightning_overhead"] == pytest.approx(1 - row["framework_it_s"]["median"] / bare["median"])
    table = (tmp_path / "speed_cpu_smoke.md").read_text()
    assert "| gan | 64 |" in table
    assert "matmul peak (512x512 fp32)" in table
    assert "trainer.precision=32-true" in table


def test_speed_benchmark_times_runs_sharing_the_machine_together(tmp_path) -> None:
    """``bench.speed --sharing 1 2``: one run alone, then two runs in separate processes whose timed spans start
    together (they overlap), the threads shared out; the total is every run's iterations over the common wall time."""
    _speed_smoke(tmp_path, "--iters", "3", "--repeats", "1", "--sharing", "1", "2")
    report = json.loads((tmp_path / "speed_sharing_cpu_smoke.json").read_text())
    assert {"avx512_bf16", "amx_bf16", "torch_threads"} <= set(report["meta"])
    alone, two = report["rows"]
    threads = report["meta"]["torch_threads"]
    assert (alone["runs"], alone["threads_per_run"]) == (1, threads)
    assert (two["runs"], two["threads_per_run"]) == (2, max(1, threads // 2))
    assert len(two["per_run_it_s"]["runs"]) == 2
    assert min(two["overlap_s"]) > 0
    # the total counts both runs' iterations over a span at least as long as each one's: at most the sum of their rates
    assert two["total_it_s"]["median"] <= sum(two["per_run_it_s"]["runs"]) * 1.001
    assert alone["total_it_s"]["median"] == pytest.approx(alone["per_run_it_s"]["median"], rel=0.01)
    assert "| gan | 2 |" in (tmp_path / "speed_sharing_cpu_smoke.md").read_text()


@pytest.mark.parametrize(
    "option, message",
    [
        (["--sharing", "0"], "--sharing takes run counts >= 1"),
        (["--peak-size", "0"], "--peak-size takes a matrix size"),
    ],
)
def test_speed_benchmark_refuses_a_count_or_size_below_one(tmp_path, capsys, option, message) -> None:
    from bench import speed

    with pytest.raises(SystemExit) as stop:
        speed.main([*option, "--out", str(tmp_path)])
    assert stop.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
