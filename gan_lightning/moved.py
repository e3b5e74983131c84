"""Settings that moved between releases: where each old key lives now.

A command line or a config with an old key stops with one line naming the new place (``hint``); the configs stored in
checkpoints of older runs are read with their keys moved (``upgrade``), so their games still load and resume.
"""

from __future__ import annotations

import copy
from typing import Any

# the groups of a game's settings that a config builds by _target_
GROUP_TARGETS = {
    "schedule": "gan_lightning.models.schedule.Schedule",
    "fidelity": "gan_lightning.models.settings.Fidelity",
    "additions": "gan_lightning.models.settings.Additions",
    "samples": "gan_lightning.models.generation.Samples",
}
_SCHEDULE = (
    *("pretrain_epochs", "pretrain_time_share", "pseudo_label_epoch", "pseudo_label_trigger", "trigger_samples"),
    *("adv_warmup_epochs", "adv_warmup_time_share", "lr_anneal_epoch", "lr_anneal_factor", "restart_c_optimizer"),
)
_FIDELITY = ("d_unlabeled_real", "reuse_forwards", "prob_clip", "c_bn_update")
_ADDITIONS = ("augment", "teacher_augment", "confidence_threshold", "align_distribution", "align_momentum")
# a game's keys: old name under model. -> new path under model.
MODEL_KEYS = {
    **{f"optimizer_{n}": f"optimizers.{n}" for n in ("c", "g", "d", "pretrain")},
    **{k: f"schedule.{k}" for k in _SCHEDULE},
    **{k: f"fidelity.{k}" for k in _FIDELITY},
    **{k: f"additions.{k}" for k in _ADDITIONS},
    **{"grid_size": "samples.grid", "grid_columns": "samples.grid", "grid_seed": "samples.seed"},
    "g_ema_decay": "samples.g_ema_decay",
}
# a game's keys that moved to the data: model.<key> -> data.<key>
DATA_KEYS = ("n_labeled",)
# other keys: old dotted path -> what to say
OTHER_KEYS = {
    "data.streams": "the games' batch sizes moved to model.batch_sizes.<stream>, "
    "e.g. model.batch_sizes.d_unlabeled=200",
    "data.pretrain_streams": "moved to model.pretrain_batch_sizes.<stream>",
    "model.n_labeled": "moved to data.n_labeled (the labeled split is the data's, beside data.label_seed)",
    "data.epoch_length": "moved to model.epoch_length",
    "epochs": "moved to model.epochs",
    "nets": "Triple-GAN's networks moved under the model: model/nets=<choice>, e.g. model/nets=triple_gan_conv",
}


def hint(key: str) -> str | None:
    """What to say about ``key`` (a dotted path, or an override ``key=value``) if it moved; None if it did not."""
    key = key.lstrip("+~").split("=", 1)[0]
    for old, new in MODEL_KEYS.items():
        if key == f"model.{old}" or key.startswith(f"model.{old}."):
            return f"moved to model.{new}{key.removeprefix(f'model.{old}')}"
    for old, said in OTHER_KEYS.items():
        if key == old or key.startswith(f"{old}."):
            return said
    return None


def upgrade(run_config: dict[str, Any]) -> dict[str, Any]:
    """A stored run config (a checkpoint's) with the game's moved keys in their new places (unchanged if none)."""
    model = run_config.get("model")
    if not isinstance(model, dict) or not any(k in model for k in (*MODEL_KEYS, *DATA_KEYS)):
        return run_config
    run_config = copy.deepcopy(run_config)
    model = run_config["model"]
    data = run_config.setdefault("data", {})
    for key in DATA_KEYS:
        if key in model:
            value = model.pop(key)
            if isinstance(data, dict):
                data[key] = value
    for old, new in MODEL_KEYS.items():
        if old in model:
            group, name = new.split(".")
            node = model.setdefault(group, {})
            if node is None:
                node = model[group] = {}
            if group in GROUP_TARGETS:
                node.setdefault("_target_", GROUP_TARGETS[group])
            node[name] = model.pop(old)
    return run_config
