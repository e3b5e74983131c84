"""``task=evaluate``: FID, KID, IS, precision/recall/density/coverage, conditional accuracy and per-class FID of
generator checkpoints in the reference features, and Inception-v3 FID/KID/IS given its weights, as a table.

    python -m gan_lightning task=evaluate ckpt_path=outputs/.../last.ckpt
    python -m gan_lightning task=evaluate 'task.checkpoints={gan: a.ckpt, dcgan: b.ckpt}'
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from gan_lightning.capabilities import CanGenerate
from gan_lightning.checkpoints import build_datamodule, load_game
from gan_lightning.errors import ConfigError
from gan_lightning.evaluation import GeneratorMetrics, load_reference, markdown_table, reference_path
from gan_lightning.evaluation.generator_metrics import extra_metrics
from gan_lightning.evaluation.inception import check_weights


def evaluate(
    cfg: DictConfig,
    checkpoints: dict | None = None,
    reference: str | None = None,
    n_samples: int = 10000,
    n_real: int | None = None,
    kid_subset_size: int = 1000,
    device: str = "cpu",
    out_dir: str | None = None,
    inception_weights: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of each checkpoint (``{name: path}``, or ``ckpt_path``) against its dataset's test set; with
    ``inception_weights`` (or ``$GAN_LIGHTNING_INCEPTION``) also the literature's Inception-v3 FID, KID and IS."""
    extra = extra_metrics(
        extra, "task.extra"
    )  # checked, then built as partials (task=evaluate is not built recursively)
    inception_weights = inception_weights or os.environ.get("GAN_LIGHTNING_INCEPTION") or None
    if inception_weights:
        check_weights(inception_weights)  # one line before any checkpoint is read
    checkpoints = dict(checkpoints or {})
    if cfg.get("ckpt_path"):
        checkpoints.setdefault(Path(cfg.ckpt_path).parent.parent.name or "checkpoint", cfg.ckpt_path)
    if not checkpoints:
        raise ConfigError("task=evaluate needs ckpt_path=<file> or task.checkpoints={name: file, ...}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"task.device={device} but no CUDA device is available (use task.device=cpu)")
    games = {
        name: load_game(path, f"task.checkpoints.{name}", generator=True) for name, path in checkpoints.items()
    }  # all checked first
    for name, (model, _) in games.items():
        if not isinstance(model, CanGenerate):
            raise ConfigError(f"checkpoint {name} holds a {type(model).__name__}, which has no generator to evaluate")
    rows, evaluators = {}, {}
    for name, (model, run_config) in games.items():
        dm_name = run_config["data"]["_target_"]
        if dm_name not in evaluators:
            dm = build_datamodule(run_config["data"], cfg.paths.data_dir)
            ref = load_reference(reference or reference_path(cfg.paths.reference_dir, dm.name), dm.name)
            n = len(dm.splits.test_y) if n_real is None else int(n_real)
            evaluators[dm_name] = GeneratorMetrics(
                ref,
                dm.splits.test_x[:n],
                dm.splits.test_y[:n],
                n_samples=n_samples,
                kid_subset_size=kid_subset_size,
                inception_weights=inception_weights,
                extra=extra,
            ).to(device)
        rows[name] = evaluators[dm_name].evaluate(model.to(device))
        print(
            f"{name}: " + ", ".join(f"{k}={v:.4g}" for k, v in rows[name].items() if not k.startswith("fid_class/")),
            flush=True,
        )
    table = markdown_table(rows, extra=list(extra or {}))
    out = Path(out_dir or cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "evaluation.json").write_text(
        json.dumps(
            {"checkpoints": {k: str(v) for k, v in checkpoints.items()}, "n_samples": n_samples, "metrics": rows},
            indent=1,
        )
    )
    (out / "evaluation.md").write_text(table + "\n")
    print(table)
    return rows
