"""The SSL study's queue (a stopped study goes on where it stopped), its paired statistics and its plots."""

from __future__ import annotations

import json
import re
import statistics
import time

import pytest
from conftest import ROOT

from bench import ssl_study


def _row(run: str, n_labeled: int, seed: int, test: float, val: float, minutes: float = 60.0) -> dict:
    curve = [
        {"minutes": 30.0, "epoch": 4, "val_err_ema": val + 0.01, "test_err_ema": test + 0.01},
        {"minutes": 60.0, "epoch": 9, "val_err_ema": val, "test_err_ema": test},
    ]
    game = run == "game"
    return {
        "dataset": "mnist",
        "n_labeled": n_labeled,
        "label_seed": seed,
        "minutes": minutes,
        "run": run,
        "final_test_err_ema": test,
        "final_val_err_ema": val,
        "g_cond_acc": 0.97 if game else None,
        "g_fid": 1.5 if game else None,
        "epochs": 10,
        "cpu": {"cpu": "test CPU"},
        "curve": curve,
        "preset": "abc1234",
    }


def test_the_paired_difference_and_its_interval_are_computed_by_split():
    game = {1: 0.010, 2: 0.012, 3: 0.020}
    abl = {1: 0.011, 2: 0.012, 3: 0.023}
    rows = [_row("game", 100, s, e, e) for s, e in game.items()] + [
        _row("ablation", 100, s, e, e) for s, e in abl.items()
    ]
    rows.append(_row("game", 100, 4, 0.5, 0.5))  # a split whose ablation has not run: left out of the pairing
    out = ssl_study.paired(rows, 100, "final_test_err_ema")
    assert out["splits"] == [1, 2, 3]
    diffs = [-0.001, 0.0, -0.003]
    assert out["diff"] == pytest.approx(diffs)
    # by hand: mean -0.001333, SD 0.001528, t(2) = 4.303: half-width 4.303 * 0.001528 / sqrt(3) = 0.003795
    lo, hi = out["diff_ci"]
    assert lo == pytest.approx(-0.001333 - 0.003795, abs=2e-6)
    assert hi == pytest.approx(-0.001333 + 0.003795, abs=2e-6)
    text = ssl_study.report(rows, ssl_study.RESULTS)
    assert "| mean ± SD (3 splits) | 1.40 ± 0.53 % | 1.53 ± 0.67 % | -0.13 [-0.51, +0.25] |" in text
    assert (
        f"{100 * statistics.mean(game.values()):.2f} ± {100 * statistics.stdev(game.values()):.2f} %" == "1.40 ± 0.53 %"
    )


def test_the_queue_goes_on_where_it_stopped_and_appends_each_pair(tmp_path, monkeypatch):
    results = tmp_path / "rows.json"
    ssl_study.append_rows(
        results,
        [_row("game", 100, 1, 0.01, 0.01), _row("ablation", 100, 1, 0.01, 0.01), _row("game", 100, 2, 0.01, 0.01)],
    )  # split 2's ablation missing: not done
    ran = []

    def run_pair(pair, root, extra, game_extra):
        ran.append((pair["n_labeled"], pair["label_seed"]))
        assert json.loads(results.read_text())["rows"]  # the rows so far are on disk before the next pair starts
        return [_row(run, pair["n_labeled"], pair["label_seed"], 0.02, 0.02) for run in ("game", "ablation")]

    monkeypatch.setattr(ssl_study, "run_pair", run_pair)
    monkeypatch.setattr(ssl_study, "preset_version", lambda: "abc1234")
    ssl_study.main(["--results", str(results), "--max-pairs", "2", "--runs-dir", str(tmp_path / "runs")])
    assert ran == [(100, 2), (100, 3)]
    ssl_study.main(
        ["--results", str(results), "--max-pairs", "1", "--only", "20", "--runs-dir", str(tmp_path / "runs")]
    )
    assert ran[-1] == (20, 1)
    ssl_study.main(
        ["--results", str(results), "--max-pairs", "1", "--splits", "5", "--runs-dir", str(tmp_path / "runs")]
    )
    assert ran[-1] == (100, 5)  # ahead of split 4
    rows = json.loads(results.read_text())["rows"]
    assert len(rows) == 3 + 2 * 4
    assert {(r["n_labeled"], r["label_seed"], r["run"]) for r in rows} >= {
        (100, 3, "ablation"),
        (20, 1, "game"),
    }
    # another run length, or another version of the preset, is another study: its queue starts from the beginning
    ssl_study.main(
        ["--results", str(results), "--max-pairs", "1", "--minutes", "15", "--runs-dir", str(tmp_path / "runs")]
    )
    assert ran[-1] == (100, 1)
    monkeypatch.setattr(ssl_study, "preset_version", lambda: "def5678")
    ssl_study.main(["--results", str(results), "--max-pairs", "1", "--runs-dir", str(tmp_path / "runs")])
    assert ran[-1] == (100, 1)
    assert len(ran) == 6


def test_the_queue_starts_no_pair_that_would_end_after_stop_by(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(ssl_study, "run_pair", lambda *a: pytest.fail("no pair may start"))
    ssl_study.main(["--results", str(tmp_path / "rows.json"), "--stop-by", "00:00", "--minutes", "1440"])
    assert "stopping: the next pair would end at" in capsys.readouterr().out


def test_stop_by_is_the_next_time_the_clock_shows_it_past_midnight_included(tmp_path, monkeypatch):
    evening = time.mktime((2026, 3, 10, 22, 34, 0, 0, 0, -1))
    assert ssl_study.deadline(23, 40, evening) - evening == 66 * 60  # later today
    assert ssl_study.deadline(22, 34, evening) == evening
    after_midnight = ssl_study.deadline(0, 58, evening)  # earlier in the day than now: tomorrow's
    assert time.localtime(after_midnight)[:5] == (2026, 3, 11, 0, 58)
    # a stop-by a minute before now is almost a day away: a pair of a minute starts
    ran = []
    monkeypatch.setattr(ssl_study, "run_pair", lambda pair, *a: ran.append(pair) or [])
    a_minute_ago = time.strftime("%H:%M", time.localtime(time.time() - 60))
    ssl_study.main(["--results", str(tmp_path / "rows.json"), "--stop-by", a_minute_ago, "--minutes", "1"])
    assert len(ran) == 5 + 3 + 3  # the whole queue of 1-minute pairs: 100 labels on 5 splits, 50 and 20 on 3


@pytest.mark.parametrize("bad", ["24:00", "7", "12:60", "ab:cd", "1:30:00", "²:30"])
def test_a_stop_by_that_is_no_time_of_day_is_refused_in_one_line(bad, tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        ssl_study.main(["--results", str(tmp_path / "rows.json"), "--stop-by", bad])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith(f"error: argument --stop-by: takes a time of day HH:MM (00:00 to 23:59), not {bad!r}")
    assert not (tmp_path / "rows.json").exists()


def test_report_writes_the_tables_and_one_plot_per_setting(tmp_path):
    results = tmp_path / "rows.json"
    ssl_study.append_rows(
        results,
        [_row(run, n, s, 0.01 * s, 0.01 * s) for n in (100, 20) for s in (1, 2) for run in ("game", "ablation")],
    )
    ssl_study.main(["--results", str(results), "--report", "--plots", str(tmp_path / "plots")])
    text = (tmp_path / "rows.md").read_text()
    assert "## 100 labels" in text
    assert "## 20 labels" in text
    for n in (100, 20):
        png = (tmp_path / "plots" / f"ssl_study_{n}labels.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert len(png) > 10_000


def test_an_earlier_preset_versions_report_is_named_after_it(tmp_path):
    """The latest version's report keeps the plain names; an earlier one's never replaces them."""
    results = tmp_path / "rows.json"
    old = [{**_row(run, 100, 1, 0.02, 0.02), "preset": "0ld0000000"} for run in ("game", "ablation")]
    ssl_study.append_rows(results, [*old, *(_row(run, 100, 1, 0.01, 0.01) for run in ("game", "ablation"))])
    plots = tmp_path / "plots"
    ssl_study.main(["--results", str(results), "--report", "--plots", str(plots)])
    ssl_study.main(["--results", str(results), "--report", "--plots", str(plots), "--preset", "0ld0000000"])
    assert "preset version abc1234" in (tmp_path / "rows.md").read_text()
    assert "preset version 0ld0000000" in (tmp_path / "rows_0ld0000000.md").read_text()
    assert sorted(p.name for p in plots.iterdir()) == ["ssl_study_0ld0000000_100labels.png", "ssl_study_100labels.png"]
    with pytest.raises(SystemExit, match="no rows of preset version f00"):
        ssl_study.main(["--results", str(results), "--report", "--preset", "f00"])


def test_changed_runs_must_name_their_preset(tmp_path):
    with pytest.raises(SystemExit, match="name them with --preset"):
        ssl_study.main(["--results", str(tmp_path / "rows.json"), "--game-extra", "model.alpha=0.3"])


def test_a_preset_laid_out_anew_continues_the_queue_of_its_earlier_version():
    """The preset's version is a digest of its composed config; a version that only moved keys names the earlier one
    (``SAME_PRESET``) and files its rows there. Each such earlier version holds rows of the results file, and the
    version of today's preset is one the queue knows (its own digest, or the earlier one it continues)."""
    filed = {row["preset"] for row in ssl_study.load_rows(ssl_study.RESULTS)}
    assert set(ssl_study.SAME_PRESET.values()) <= filed
    assert not set(ssl_study.SAME_PRESET) & set(ssl_study.SAME_PRESET.values())  # one step: no chains
    version = ssl_study.preset_version()
    assert len(version) == 10
    assert int(version, 16) >= 0
    assert version not in ssl_study.SAME_PRESET  # always the earlier version's name


def _first_table_naming(text: str, words: str) -> list[list[str]]:
    """The cells of the first markdown table with a row holding ``words``."""
    tables: list[list[list[str]]] = [[]]
    for line in text.splitlines():
        if line.startswith("|"):
            tables[-1].append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif tables[-1]:
            tables.append([])
    return next(t for t in tables if any(words in cell for row in t for cell in row))


def test_the_readme_headline_is_the_latest_presets_rows_in_the_results_file():
    """The README's study table is typed by hand from the results file: each split's last-epoch test error of the game
    and the ablation, and their mean ± SD, as ``--report`` computes them from the latest preset version's rows."""
    rows = ssl_study.load_rows(ROOT / ssl_study.RESULTS)
    latest = [r for r in rows if r["preset"] == rows[-1]["preset"] and r["n_labeled"] == 100]
    test = ssl_study.paired(latest, 100, "final_test_err_ema")
    table = _first_table_naming((ROOT / "README.md").read_text(), "experiment=triple_gan_mnist100_fast")
    header, body = table[0], table[2:]
    game = next(row for row in body if "experiment=triple_gan_mnist100_fast" in row[0])
    ablation = next(row for row in body if row[0].startswith("ablation"))
    columns = {int(h.split()[1]): i for i, h in enumerate(header) if h.startswith("split ")}
    mean = next(i for i, h in enumerate(header) if h.startswith("mean ± SD"))
    assert sorted(columns) == test["splits"], "the README's split columns are not the latest preset's splits"
    for values, row in ((test["game"], game), (test["ablation"], ablation)):
        for split, value in zip(test["splits"], values):
            assert re.search(r"\d+\.\d+", row[columns[split]]).group() == f"{100 * value:.2f}", (row[0], split)
        assert row[mean].strip("*") == ssl_study._ms(values), row[0]
    assert f"({len(test['splits'])} split" in header[mean]
