"""gan_lightning: GAN experiments with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"

import hashlib
from pathlib import Path

from omegaconf import OmegaConf

from gan_lightning.hardware import auto_precision, cpu_precision
from gan_lightning.hydra_callbacks import claim_directory

# `${sum:a,b}` in configs (e.g. max_epochs = pre-training epochs + game epochs).
OmegaConf.register_new_resolver("sum", lambda *xs: sum(xs), replace=True)
# `${cpu_precision:}`: bf16-mixed on CPUs with native bf16, else 32-true.
OmegaConf.register_new_resolver("cpu_precision", cpu_precision, replace=True)
# `${auto_precision:}`: 32-true on a CUDA machine, else cpu_precision (the default trainer's choice).
OmegaConf.register_new_resolver("auto_precision", auto_precision, replace=True)
# `${unique_dir:outputs/<date>/<time>}`: that directory, or <time>-2, -3, ... when a run started in the same second
# holds it.
OmegaConf.register_new_resolver("unique_dir", claim_directory, replace=True, use_cache=True)
# `${digest:text}`: 10 hex digits of text's SHA-1 (a short directory name for a sweep job's parameters).
OmegaConf.register_new_resolver("digest", lambda text: hashlib.sha1(str(text).encode()).hexdigest()[:10], replace=True)
# `${shipped_references:}`: the reference feature networks that ship with the package (MNIST, Fashion-MNIST).
OmegaConf.register_new_resolver(
    "shipped_references", lambda: str(Path(__file__).resolve().parent / "references"), replace=True
)
