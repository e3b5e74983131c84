"""``task=sample``: images from a trained generator's checkpoint, on CPU or GPU.

Writes to the run directory (or ``task.out_dir``): ``random.png`` (a random grid), ``classes.png`` (one row per
class, conditional models), ``interpolation_z.png`` (each row walks linearly from one latent code to another),
``interpolation_class.png`` (conditional: each row keeps z and walks from class k to class k+1 through mixed
label codes) and, with ``task.npz=N``, ``samples.npz`` (N images as uint8 ``(N, H, W, C)`` and their labels)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torchvision.utils as vutils
from omegaconf import DictConfig

from gan_lightning.capabilities import CanGenerate
from gan_lightning.checkpoints import load_game
from gan_lightning.errors import ConfigError


def _save(images: torch.Tensor, path: Path, nrow: int) -> Path:
    vutils.save_image(images, path, nrow=nrow, padding=2, pad_value=1.0)
    return path


def sample(
    cfg: DictConfig,
    n: int = 64,
    columns: int = 10,
    interpolation_steps: int = 10,
    interpolation_rows: int = 10,
    npz: int = 0,
    seed: int = 0,
    device: str = "cpu",
    out_dir: str | None = None,
) -> list[Path]:
    """Write the sample images of ``cfg.ckpt_path``; returns the written paths."""
    for name, value in (
        ("n", n),
        ("columns", columns),
        ("interpolation_steps", interpolation_steps),
        ("interpolation_rows", interpolation_rows),
    ):
        if value <= 0:
            raise ConfigError(f"task.{name}={value} must be positive")
    if npz < 0:
        raise ConfigError(f"task.npz={npz} must be >= 0")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"task.device={device} but no CUDA device is available (use task.device=cpu)")
    model, _ = load_game(cfg.ckpt_path, generator=True)
    if not isinstance(model, CanGenerate):
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path} holds a {type(model).__name__}, which has no generator to sample from"
        )
    model = model.to(device)
    out = Path(out_dir or cfg.paths.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    K, dim, cond = model.num_classes, model.latent_dim, model.is_conditional

    def z_(m: int) -> torch.Tensor:
        return model.sample_z(m, dim, generator=gen, device="cpu")

    def render(z: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        return model.generate(z.to(device), None if y is None else y.to(device)).cpu()

    written = []
    y = torch.randint(K, (n,), generator=gen) if cond else None
    written.append(_save(render(z_(n), y), out / "random.png", math.ceil(math.sqrt(n))))
    if cond:  # one row per class, the same z down each column
        written.append(
            _save(
                render(z_(columns).repeat(K, 1), torch.arange(K).repeat_interleave(columns)),
                out / "classes.png",
                columns,
            )
        )
    t = torch.linspace(0, 1, interpolation_steps)[None, :, None]
    ends = z_(2 * interpolation_rows).view(interpolation_rows, 2, 1, dim)
    z = (ends[:, 0] * (1 - t) + ends[:, 1] * t).reshape(-1, dim)
    rows_y = (torch.arange(interpolation_rows) % K).repeat_interleave(interpolation_steps) if cond else None
    written.append(_save(render(z, rows_y), out / "interpolation_z.png", interpolation_steps))
    if cond:  # fixed z per row, label code mixed from class k to class k + 1
        k = torch.arange(interpolation_rows) % K
        a, b = torch.nn.functional.one_hot(k, K).float(), torch.nn.functional.one_hot((k + 1) % K, K).float()
        soft = (a[:, None] * (1 - t) + b[:, None] * t).reshape(-1, K)
        z = z_(interpolation_rows).repeat_interleave(interpolation_steps, 0)
        written.append(_save(render(z, soft), out / "interpolation_class.png", interpolation_steps))
    if npz:
        labels = torch.arange(K).repeat(npz // K + 1)[:npz] if cond else torch.full((npz,), -1)
        images = torch.cat(
            [render(zb, yb if cond else None) for zb, yb in zip(z_(npz).split(1000), labels.split(1000))]
        )
        uint8 = (images * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        np.savez_compressed(out / "samples.npz", images=uint8, labels=labels.numpy())
        written.append(out / "samples.npz")
    for path in written:
        print(path)
    return written
