"""Transfer learning: a pre-trained backbone's features and a new linear head (the reports' VGG16 on 15-Scene and
cats-vs-dogs). Backbones: any torchvision classification network by name (``vgg16``, ``resnet18``, ...) or
``reference``, the framework's own reference network architecture (Triple-GAN's C, 128 features)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError
from gan_lightning.nets.blocks import check_image_shape

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def _torchvision_backbone(name: str, weights: str | None) -> nn.Module:
    import torchvision

    if name not in torchvision.models.list_models(module=torchvision.models):
        raise ConfigError(
            f"model.classifier.backbone={name!r} is not a torchvision classification model (e.g. vgg16, resnet18)"
        )
    if weights is None or Path(str(weights)).suffix in (".pt", ".pth"):
        return torchvision.models.get_model(name, weights=None)
    try:
        enum = torchvision.models.get_model_weights(name)[weights]
    except KeyError:
        names = [w.name for w in torchvision.models.get_model_weights(name)]
        raise ConfigError(
            f"model.classifier.weights={weights!r} is not a weight set of {name} ({', '.join(names)}) "
            "nor a local .pt/.pth state-dict file"
        ) from None
    try:
        return torchvision.models.get_model(name, weights=enum)
    except Exception as err:  # noqa: BLE001 - offline, or the download failed
        raise ConfigError(
            f"model.classifier.weights={weights}: the download failed ({type(err).__name__}); without internet give "
            "a local state-dict file (.pt/.pth) of the same network"
        ) from None


def _load_state(network: nn.Module, path: str) -> None:
    file = Path(path)
    if not file.is_file():
        raise ConfigError(f"model.classifier.weights={path} does not exist")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        network.load_state_dict(state)
    except (RuntimeError, KeyError, AttributeError, TypeError) as err:
        first = str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else str(err)[:160]
        raise ConfigError(f"model.classifier.weights={path} does not fit the backbone ({first})") from None
    except Exception as err:  # noqa: BLE001 - unpickling failed
        raise ConfigError(
            f"model.classifier.weights={path} is not a readable state dict ({type(err).__name__})"
        ) from None


class FinetuneNet(nn.Module):
    """A backbone's features (its last linear layer removed) and a new linear ``head`` for ``num_classes``.

    Args:
        image_shape: the data's (C, H, W); grayscale inputs are repeated to three channels for torchvision
            backbones and every input is resized to ``input_size`` and normalised with ImageNet's statistics.
        backbone: a torchvision model name, or ``reference`` (Triple-GAN's classifier architecture; its inputs are
            the images as they are).
        weights: torchvision's weight name (``DEFAULT``, ``IMAGENET1K_V1``: downloads where there is internet), a
            local state-dict file (``.pt``/``.pth``; for ``reference`` also a reference network file of
            ``task=reference``), or null (random initialisation: training from scratch).
        trainable_layers: the backbone's last N layers with weights are trained too (0: frozen features);
            ``backbone_lr`` is their learning rate (the head uses the optimizer's).
        dropout: dropout on the features before the head.
    """

    def __init__(
        self,
        image_shape: Sequence[int],
        num_classes: int,
        backbone: str = "resnet18",
        weights: str | None = None,
        input_size: int | None = 224,
        trainable_layers: int = 0,
        backbone_lr: float = 1e-4,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.image_shape = check_image_shape(
            "FinetuneNet", image_shape, "(1 or 3, H, W)", next(iter(image_shape)) in (1, 3)
        )
        if trainable_layers < 0 or not backbone_lr > 0:
            raise ConfigError(
                f"model.classifier.trainable_layers={trainable_layers} must be >= 0 "
                f"and backbone_lr={backbone_lr} positive"
            )
        self.backbone_name, self.backbone_lr = backbone, float(backbone_lr)
        if backbone == "reference":
            from gan_lightning.nets.triple_gan import ConvClassifier

            net: nn.Module = ConvClassifier(self.image_shape, 10)
            if weights:
                if Path(weights).suffix == ".pt" and _is_reference_file(weights):
                    from gan_lightning.evaluation.reference import load_reference

                    net = load_reference(weights).network
                else:
                    _load_state(net, weights)
            self.features, dim = net.features, net.head.in_features
            self.channels, self.input_size, self.normalise = self.image_shape[0], None, False
        else:
            net = _torchvision_backbone(backbone, weights)
            if weights and Path(str(weights)).suffix in (".pt", ".pth"):
                _load_state(net, weights)
            dim = _drop_last_linear(net)
            self.features = net
            self.channels, self.input_size, self.normalise = 3, input_size, True
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"model.classifier.dropout={dropout} must be in [0, 1)")
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(dim, num_classes)
        self.frozen = trainable_layers == 0
        self.features.requires_grad_(False)
        layers = [m for m in self.features.modules() if any(True for _ in m.parameters(recurse=False))]
        for module in layers[len(layers) - trainable_layers :] if trainable_layers else []:
            module.requires_grad_(True)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> FinetuneNet:
        """Frozen features stay in eval mode: their batch-norm statistics and dropout stay those of pre-training."""
        super().train(mode)
        if self.frozen:
            self.features.train(False)
        return self

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1 and self.channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.input_size and x.shape[-1] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std if self.normalise else x

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.prepare(x)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.embed(x)))

    def parameter_groups(self) -> list[dict]:
        """The head at the optimizer's learning rate, the trained backbone layers at ``backbone_lr``."""
        groups: list[dict] = [{"params": list(self.head.parameters())}]
        trained = [p for p in self.features.parameters() if p.requires_grad]
        if trained:
            groups.append({"params": trained, "lr": self.backbone_lr})
        return groups


def _is_reference_file(path: str) -> bool:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001
        return False
    return isinstance(payload, dict) and str(payload.get("format", "")).startswith("gan_lightning.reference")


def _drop_last_linear(network: nn.Module) -> int:
    """Replace the network's last ``nn.Linear`` (its classifier) by the identity; returns its input width."""
    name, last = "", None
    for n, m in network.named_modules():
        if isinstance(m, nn.Linear):
            name, last = n, m
    if last is None:
        raise ConfigError(f"{type(network).__name__} has no linear classifier layer to replace")
    parent = network.get_submodule(name.rsplit(".", 1)[0]) if "." in name else network
    setattr(parent, name.rsplit(".", 1)[-1], nn.Identity())
    return last.in_features
