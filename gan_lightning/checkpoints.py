"""Rebuild a trained game from a checkpoint written by ``task=train`` (the run config travels inside it)."""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from gan_lightning.capabilities import in_pretraining
from gan_lightning.errors import ConfigError
from gan_lightning.moved import upgrade
from gan_lightning.safe_build import build_stored


def read_checkpoint(path: str | Path, what: str = "ckpt_path") -> dict:
    """The checkpoint as a dict (loaded with ``weights_only``), or a one-line ConfigError saying what is wrong."""
    if path in (None, ""):
        raise ConfigError(
            f"{what} is required: give the path of a checkpoint (e.g. outputs/<date>/<time>/checkpoints/last.ckpt)"
        )
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what}={path} does not exist")
    try:
        with warnings.catch_warnings():  # a damaged file also triggers pickle-protocol warnings: one line is enough
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure to unpickle means the same thing to the user
        raise ConfigError(
            f"{what}={path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:120]})"
        ) from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ConfigError(f"{what}={path} is not a Lightning checkpoint (no state_dict)")
    return ckpt


def _describe(run_config: dict) -> str:
    model, data = run_config.get("model") or {}, run_config.get("data") or {}
    shape = "x".join(str(v) for v in data.get("image_shape") or []) or "?"
    nets = ", ".join(
        str(model[n].get("_target_", "?")).rsplit(".", 1)[-1]
        for n in ("classifier", "generator", "discriminator")
        if isinstance(model.get(n), dict)
    )
    return (
        f"{str(model.get('_target_', '?')).rsplit('.', 1)[-1]} ({nets}) "
        f"on {str(data.get('_target_', '?')).rsplit('.', 1)[-1]} "
        f"({shape} images, {data.get('num_classes', '?')} classes)"
    )


def check_resumable(
    ckpt: dict, run_config: dict, model: torch.nn.Module | None = None, what: str = "ckpt_path"
) -> None:
    """A training run resumed from ``ckpt`` must be the game, dataset and image shape it was written by, with
    parameters of the same names and shapes: one line saying what the checkpoint holds and what the run expected."""
    stored = ckpt.get("run_config")
    if not isinstance(stored, dict) or "model" not in stored:
        raise ConfigError(
            f"{what} was not written by gan_lightning training (it has no run config); "
            f"this run expected {_describe(run_config)}"
        )
    held, expected = _describe(stored), _describe(run_config)
    if held != expected:
        raise ConfigError(
            f"{what} holds {held}; this run is {expected}: resume with the config the checkpoint was "
            "written with (its run directory's .hydra/config.yaml)"
        )
    _check_same_split(upgrade(stored).get("data") or {}, run_config.get("data") or {}, what)
    if model is not None:
        saved = {k: tuple(v.shape) for k, v in ckpt["state_dict"].items()}
        current = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        differ = sorted(k for k in saved.keys() & current.keys() if saved[k] != current[k])
        missing, unexpected = sorted(current.keys() - saved.keys()), sorted(saved.keys() - current.keys())
        if differ or missing or unexpected:
            name = (differ or missing or unexpected)[0]
            detail = (
                f"{name} is {saved[name]} there and {current[name]} here"
                if differ
                else f"{name} is missing there"
                if missing
                else f"{name} has no place here"
            )
            raise ConfigError(
                f"{what} holds {held} with other networks ({detail}): resume with the config the checkpoint "
                "was written with (its run directory's .hydra/config.yaml)"
            )


# key: default of older runs (n_labeled: compared when the checkpoint states it)
SPLIT_KEYS = {"n_labeled": None, "val_size": 0, "val_seed": 0, "label_seed": 1, "label_split": "official"}


def _check_same_split(stored: dict, current: dict, what: str) -> None:
    """A resumed run keeps the images it trained, validated and was labeled on: one line naming the first setting
    that differs (runs written before the validation set existed have ``val_size: 0``)."""
    for key, default in SPLIT_KEYS.items():
        held, now = stored.get(key, default), current.get(key, default)
        if key in current and held != now and (key in stored or key != "n_labeled"):
            raise ConfigError(
                f"{what} was trained with data.{key}={held}; this run has data.{key}={now}: resume with "
                f"data.{key}={held} (the images it trains, validates and is labeled on stay the same)"
            )


def load_game(path: str | Path, what: str = "ckpt_path", generator: bool = False):
    """(model in eval mode on CPU, run config) from a training checkpoint; one-line ConfigError when the file is
    missing, unreadable, not from gan_lightning, or does not match the networks its config describes. With
    ``generator`` (the tasks that show or measure G) one line on stderr when G had not been trained yet."""
    ckpt = read_checkpoint(path, what)
    run_config = ckpt.get("run_config")
    if not isinstance(run_config, dict) or "model" not in run_config:
        raise ConfigError(f"{what}={path} was not written by gan_lightning training (it has no run config)")
    run_config = upgrade(run_config)  # keys of older releases in their current places
    try:
        model = build_stored(_no_pretrained_weights(run_config["model"]), f"{what}={path}", "model")
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001
        raise ConfigError(
            f"{what}={path}: its model config cannot be built here ({type(err).__name__}: {err})"
        ) from None
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)[:160]
        raise ConfigError(f"{what}={path} does not fit its model ({first})") from None
    model.load_saved_states(ckpt)
    model.run_config = run_config
    if generator and (why := untrained_generator(model, ckpt.get("epoch"))):
        print(f"note: {what}={path} {why}", file=sys.stderr, flush=True)
    return model.eval(), run_config


def untrained_generator(model, epoch: int | None) -> str | None:
    """Why the generator of ``model``, saved in (0-based) Lightning epoch ``epoch``, has not been trained yet: a game
    with phases saved during C's pre-training. None when it has been (or the game has no pre-training)."""
    if epoch is None or not in_pretraining(model, epoch):
        return None
    schedule = model.schedule
    length = f"{schedule.pretrain_end} epoch{'s' * (schedule.pretrain_end != 1)}"
    if schedule.pretrain_time_share is not None:
        length = f"at most {length}, or {schedule.pretrain_time_share:.0%} of trainer.max_time"
    return (
        f"was saved in epoch {epoch + 1} of C's pre-training ({length}): its generator has not been trained yet, "
        "so its images are noise"
    )


def _no_pretrained_weights(node):
    """The stored config with fine-tuning backbones built without their pre-trained weights (the checkpoint holds the
    trained ones): opening a checkpoint downloads nothing and reads no other file."""
    if isinstance(node, list):
        return [_no_pretrained_weights(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _no_pretrained_weights(v) for k, v in node.items()}
    if str(out.get("_target_", "")).endswith(".FinetuneNet"):
        out["weights"] = None
    return out


LEGACY_DATA_KEYS = (
    "streams",
    "epoch_length",
    "pretrain_streams",
    "pretrain_epochs",
    "pretrain_epoch_length",
)


def build_datamodule(data_cfg: dict, data_dir: str, source: str = "checkpoint"):
    """A datamodule from a (resolved) data config, e.g. the one a checkpoint was trained on (checked like every
    stored config), reading files from ``data_dir`` and writing no index file (set up, ready to use)."""
    # the batch composition moved to the game (gan_lightning.plan); checkpoints of older runs still name it here
    data_cfg = {k: v for k, v in data_cfg.items() if k not in LEGACY_DATA_KEYS}
    datamodule = build_stored({**data_cfg, "data_dir": data_dir, "index_file": None}, source, "data")
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, made atomic: the checkpoint is written to a hidden temporary file in
    the same directory and renamed over the target, so a kill during a save leaves the previous file intact."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
