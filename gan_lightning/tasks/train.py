"""``task=train``: build datamodule, model, callbacks, logger and trainer from the config, then fit."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gan_lightning.acceleration import accelerate
from gan_lightning.callbacks.pruning import OptunaPruning
from gan_lightning.capabilities import check_capabilities
from gan_lightning.checkpoints import check_resumable, read_checkpoint
from gan_lightning.config_check import check_config
from gan_lightning.errors import ConfigError
from gan_lightning.selection import check_selection


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "/"))
        else:
            out[key] = v if isinstance(v, (int, float, str, bool)) or v is None else str(v)
    return out


def build(cfg: DictConfig):
    """Instantiate (datamodule, model, trainer) and load the data, so every input error surfaces before training."""
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    check_config(
        OmegaConf.to_container(cfg, resolve=True)
    )  # unknown keys, wrong types: one line before anything is built
    for group in ("callbacks", "logger"):
        for name, node in (cfg.get(group) or {}).items():
            if node is not None and "_target_" not in node:  # e.g. a preset's options for a callback not selected
                raise ConfigError(
                    f"{group}.{name} sets {', '.join(map(str, node))}, but this run has no {group}.{name} (the "
                    f"{group} option chosen leaves it out): drop it with ~{group}.{name}"
                )
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")  # plain containers: checkpoints stay loadable with weights_only
    check_capabilities(model)  # a half-implemented capability is one line here, not a feature silently off
    datamodule.serve(model)  # the game's streams, phases and labeled subset; one line if the data cannot serve them
    if cfg.get("monitor") is None and type(model).MONITOR and datamodule.has_validation:
        cfg.monitor = type(model).MONITOR  # the checkpoint callback keeps the best by the game's validation metric
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    check_selection(model.run_config, datamodule.has_validation)  # choices by val/* only, and only with a val set
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # `logger=none`: nothing to monitor learning rates into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    check_trainer_counts(trainer_cfg)
    trainer_cfg = accelerate(model, trainer_cfg)  # trainer.cuda_graphs, .compile, .reuse_cpu_memory: applied here
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, model, trainer


TRAINER_COUNTS = {"log_every_n_steps": 0, "check_val_every_n_epoch": 1}  # key: smallest allowed whole number


MAX_TIME_UNITS = ("days", "hours", "minutes", "seconds")


def check_trainer_counts(trainer_cfg: dict) -> None:
    """One line for a trainer count Lightning would take without complaint and then misuse (e.g. a negative
    ``log_every_n_steps`` logs nothing and trains on), and for a ``max_time`` it could not read."""
    for key, least in TRAINER_COUNTS.items():
        value = trainer_cfg.get(key)  # None: Lightning's default (check_val_every_n_epoch: validate by steps)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < least):
            raise ConfigError(f"trainer.{key}={value!r} must be a whole number >= {least}")
    max_time = trainer_cfg.get("max_time")
    if max_time is None:
        return
    parts = max_time.split(":") if isinstance(max_time, str) else None
    if isinstance(max_time, dict):
        ok = (
            set(max_time) <= set(MAX_TIME_UNITS)
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0 for v in max_time.values())
            and any(max_time.values())
        )
    else:
        ok = parts is not None and len(parts) == 4 and all(p.isdigit() for p in parts) and any(int(p) for p in parts)
    if not ok:
        raise ConfigError(
            f"trainer.max_time={max_time!r} must be a positive duration DD:HH:MM:SS (e.g. 00:01:00:00 for "
            f"an hour), a mapping of {', '.join(MAX_TIME_UNITS)}, or null"
        )


def fit(cfg: DictConfig):
    """Build everything, fit, and log the whole config next to the final metrics (one HParams view per sweep)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":  # the run directory's own last.ckpt: resume a run by giving its directory
        ckpt_path = str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
        if not Path(ckpt_path).is_file():
            raise ConfigError(
                f"ckpt_path=last: there is no {ckpt_path}; resume a run with hydra.run.dir=<its directory> "
                "ckpt_path=last, or give ckpt_path=<file>"
            )
    ckpt = read_checkpoint(ckpt_path) if ckpt_path is not None else None
    if ckpt is not None:  # another game, dataset or image shape: one line before anything is built
        check_resumable(ckpt, OmegaConf.to_container(cfg, resolve=True), what=f"ckpt_path={ckpt_path}")
    datamodule, model, trainer = build(cfg)
    if ckpt is not None:  # the same game with other networks (sizes, layers)
        check_resumable(ckpt, model.run_config, model, what=f"ckpt_path={ckpt_path}")
    _say(f"run directory: {cfg.paths.output_dir}")
    start = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    final = {
        f"hparam/{k}": float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "test/", "gen/"))
    }
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the HParams view pairs the config with the final metrics
            logger.log_hyperparams(_flatten(model.run_config), final or None)
        else:
            logger.log_hyperparams(_flatten(model.run_config))
            if final:
                logger.log_metrics(final, step=trainer.global_step)
            logger.save()
    shown = ", ".join(
        f"{k}={float(v):.4g}"
        for k, v in sorted(trainer.callback_metrics.items())
        if k.startswith(("val/err", "test/err", "gen/fid", "gen/cond_acc", "gen/ema_c_acc"))
        and "/best" not in k
        and "fid_class/" not in k
    )  # per-class FIDs stay in TensorBoard; their mean is shown
    _say(f"done in {(time.time() - start) / 60:.1f} min, {trainer.current_epoch} epochs{': ' + shown if shown else ''}")
    _say(
        f"run directory: {cfg.paths.output_dir} "
        f"(checkpoints/last.ckpt, TensorBoard: tensorboard --logdir {cfg.paths.output_dir})"
    )
    return datamodule, model, trainer


@rank_zero_only
def _say(line: str) -> None:
    print(line, flush=True)


RESULT_FILE = "result.json"  # written when a training run ends (not when it is interrupted): what resume=true skips


def _job_overrides() -> list[str]:
    """The command-line overrides of this run (a sweep's job: its own), less ``resume`` and Hydra's."""
    try:
        from hydra.core.hydra_config import HydraConfig

        given = list(HydraConfig.get().overrides.task)
    except ValueError:  # not under Hydra (tests building runs directly)
        return []
    return [o for o in given if not o.lstrip("+").startswith(("resume=", "hydra.", "ckpt_path=", "pruning."))]


def _resume_point(cfg: DictConfig) -> float | bool | None:
    """With ``resume=true``: the stored value of a run that finished in this directory (it is not trained again), or
    False after pointing ``ckpt_path`` at the directory's ``last.ckpt`` (an interrupted run), or False (never begun)."""
    out = Path(cfg.paths.output_dir)
    result = out / RESULT_FILE
    if result.is_file():
        stored = json.loads(result.read_text())
        if stored.get("overrides") != _job_overrides():
            raise ConfigError(
                f"resume=true: {out} holds a finished run of other overrides "
                f"({' '.join(stored.get('overrides') or [])}); "
                "resume a sweep with its own command and hydra.sweep.dir"
            )
        _say(f"resume=true: {out} finished before ({stored.get('metric')}={stored.get('value')}); not trained again")
        return stored.get("value")
    last = out / "checkpoints" / "last.ckpt"
    if last.is_file() and cfg.get("ckpt_path") is None:
        _say(f"resume=true: continuing {out} from {last}")
        cfg.ckpt_path = str(last)
    return False


def train(cfg: DictConfig) -> float | None:
    """Fit the model; returns the config's ``optimized_metric`` (for sweepers) when it was logged. With ``resume=true``
    a run that finished in its directory is not trained again (its stored value is returned) and an interrupted one
    continues from its ``last.ckpt``."""
    if cfg.get("resume"):
        stored = _resume_point(cfg)
        if stored is not False:
            return stored  # type: ignore[return-value]
    _, _, trainer = fit(cfg)
    metric = cfg.get("optimized_metric")
    value = float(trainer.callback_metrics[metric]) if metric and metric in trainer.callback_metrics else None
    if not trainer.interrupted and trainer.is_global_zero:
        pruned = next(
            (c.pruned_at for c in trainer.callbacks if isinstance(c, OptunaPruning) and c.pruned_at is not None), None
        )
        result = {
            "metric": metric,
            "value": value,
            "overrides": _job_overrides(),
            "global_step": trainer.global_step,
            "pruned_at_epoch": pruned,
            "final": {
                k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "test/", "gen/"))
            },
        }
        path = Path(cfg.paths.output_dir) / RESULT_FILE
        path.with_name(f".{RESULT_FILE}.tmp").write_text(json.dumps(result, indent=1))
        path.with_name(f".{RESULT_FILE}.tmp").replace(path)
    return value
