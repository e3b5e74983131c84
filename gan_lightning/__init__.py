"""gan_lightning: GAN experiments with PyTorch Lightning and Hydra."""

__version__ = "0.1.0"

from omegaconf import OmegaConf

# `${sum:a,b}` in configs (e.g. max_epochs = pre-training epochs + game epochs).
OmegaConf.register_new_resolver("sum", lambda *xs: sum(xs), replace=True)
