"""``task=train``: build datamodule, model, callbacks, logger and trainer from the config, then fit."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from gan_lightning.capabilities import RecordsCudaGraphs
from gan_lightning.checkpoints import read_checkpoint
from gan_lightning.config_check import check_config
from gan_lightning.errors import ConfigError


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
    check_config(OmegaConf.to_container(cfg, resolve=True))  # unknown keys, wrong types: one line before anything is built
    datamodule = instantiate(cfg.data, _convert_="all")
    model = instantiate(cfg.model, _convert_="all")  # plain containers: checkpoints stay loadable with weights_only
    datamodule.serve(model)  # the game's streams, phases and labeled subset; one line if the data cannot serve them
    if cfg.get("monitor") is None and type(model).MONITOR:  # the checkpoint callback keeps the best by the game's metric
        cfg.monitor = type(model).MONITOR
    model.run_config = OmegaConf.to_container(cfg, resolve=True)
    callbacks = [instantiate(c) for c in (cfg.get("callbacks") or {}).values() if c is not None]
    loggers = [instantiate(c) for c in (cfg.get("logger") or {}).values() if c is not None]
    if not loggers:  # `logger=none`: nothing to monitor learning rates into
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    compile_cfg = trainer_cfg.pop("compile", False)  # not a Trainer argument: applied to the networks
    cuda_graphs = trainer_cfg.pop("cuda_graphs", False)  # nor this: the model records its iterations
    if cuda_graphs == "auto":  # on wherever it works: a game that records its steps, alone on one CUDA GPU
        cuda_graphs = _cuda_graphs_problem(model, trainer_cfg, compile_cfg) is None
    elif cuda_graphs not in (True, False):
        raise ConfigError(f"trainer.cuda_graphs={cuda_graphs!r} is not one of [auto, true, false]")
    if cuda_graphs:
        check_cuda_graphs(model, trainer_cfg, compile_cfg)
        model.enable_cuda_graphs()
    trainer = instantiate(trainer_cfg, callbacks=callbacks, logger=loggers or False)
    if compile_cfg:  # true, or torch.compile options such as {mode: max-autotune}
        model.compile_networks(**(compile_cfg if isinstance(compile_cfg, dict) else {}))
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule, model, trainer


def check_cuda_graphs(model, trainer_cfg: dict, compile_cfg) -> None:
    """``trainer.cuda_graphs=true`` needs one CUDA GPU, a precision without a gradient scaler, and a game that records its steps."""
    problem = _cuda_graphs_problem(model, trainer_cfg, compile_cfg)
    if problem:
        raise ConfigError(f"trainer.cuda_graphs=true {problem}")


def _cuda_graphs_problem(model, trainer_cfg: dict, compile_cfg) -> str | None:
    problem = None
    if not isinstance(model, RecordsCudaGraphs):
        problem = f"is supported by model=triple_gan, not by {type(model).__name__}"
    elif trainer_cfg.get("accelerator") == "cpu" or not torch.cuda.is_available():
        problem = "needs a CUDA GPU (trainer=gpu) and none is visible; without one add trainer.cuda_graphs=false"
    elif str(trainer_cfg.get("precision")) in ("16-mixed", "16", "16-true"):
        problem = f"does not work with precision={trainer_cfg.get('precision')} (its gradient scaler reads values back); use bf16-mixed or 32-true"
    elif trainer_cfg.get("devices", 1) not in (1, "1", [0]) or "ddp" in str(trainer_cfg.get("strategy", "")):
        problem = "runs on one GPU (trainer.devices=1, no DDP)"
    elif compile_cfg:
        problem = "and trainer.compile=true exclude each other; choose one"
    return problem


def fit(cfg: DictConfig):
    """Build everything, fit, and log the whole config next to the final metrics (one HParams view per sweep)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path == "last":  # the run directory's own last.ckpt: resume a run by giving its directory
        ckpt_path = str(Path(cfg.paths.output_dir) / "checkpoints" / "last.ckpt")
        if not Path(ckpt_path).is_file():
            raise ConfigError(f"ckpt_path=last: there is no {ckpt_path}; resume a run with hydra.run.dir=<its directory> "
                              "ckpt_path=last, or give ckpt_path=<file>")
    if ckpt_path is not None:
        read_checkpoint(ckpt_path)
    datamodule, model, trainer = build(cfg)
    _say(f"run directory: {cfg.paths.output_dir}")
    start = time.time()
    trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
    final = {f"hparam/{k}": float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("val/", "gen/"))}
    for logger in trainer.loggers:
        if isinstance(logger, TensorBoardLogger):  # the HParams view pairs the config with the final metrics
            logger.log_hyperparams(_flatten(model.run_config), final or None)
        else:
            logger.log_hyperparams(_flatten(model.run_config))
            if final:
                logger.log_metrics(final, step=trainer.global_step)
            logger.save()
    shown = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted(trainer.callback_metrics.items())
                      if k.startswith(("val/err", "gen/fid", "gen/cond_acc", "gen/ema_c_acc")) and "/best" not in k)
    _say(f"done in {(time.time() - start) / 60:.1f} min, {trainer.current_epoch} epochs{': ' + shown if shown else ''}")
    _say(f"run directory: {cfg.paths.output_dir} (checkpoints/last.ckpt, TensorBoard: tensorboard --logdir {cfg.paths.output_dir})")
    return datamodule, model, trainer


@rank_zero_only
def _say(line: str) -> None:
    print(line, flush=True)


def train(cfg: DictConfig) -> float | None:
    """Fit the model; returns the config's ``optimized_metric`` (for sweepers) when it was logged."""
    _, _, trainer = fit(cfg)
    metric = cfg.get("optimized_metric")
    if metric and metric in trainer.callback_metrics:
        return float(trainer.callback_metrics[metric])
    return None
