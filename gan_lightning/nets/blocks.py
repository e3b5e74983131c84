"""Small building blocks shared by the networks."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gan_lightning.errors import ConfigError

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def batch_stat_layers(module: nn.Module) -> list[str]:
    """Names of ``module``'s layers whose output depends on the rest of the batch (batch norm)."""
    return [name for name, m in module.named_modules() if isinstance(m, BATCH_NORMS)]


def refuse_batch_statistics(module: nn.Module, key: str, what: str) -> None:
    """One line when ``module`` (configured at ``key``) has batch norm, whose batch statistics would change ``what``."""
    found = batch_stat_layers(module)
    if found:
        raise ConfigError(
            f"{key}: {type(module).__name__} has batch norm ({found[0]}), whose batch statistics would change {what}; "
            "use one without it (e.g. DCGANDiscriminator norm=spectral or norm=none)"
        )


class GaussianNoise(nn.Module):
    """Adds N(0, sigma^2) noise in training mode, drawn in the input's logical order (as ``random_like``: the same
    noise in any memory layout); identity in eval mode."""

    def __init__(self, sigma: float) -> None:
        super().__init__()
        self.sigma = float(sigma)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and self.sigma > 0:  # sigma * N(0, 1) in the sampler itself: one pass less than a product
            return x + torch.empty(x.shape, dtype=x.dtype, device=x.device).normal_(0.0, self.sigma)
        return x


class MaskDropout(nn.Dropout):
    """Dropout from a keep-mask of the input's shape (survivors scaled by 1 / (1 - p)): the distribution of
    ``nn.Dropout`` from another random stream, faster on a CPU, where torch's Bernoulli sampling is slow
    (``bench.profile``: 16 % of a Triple-GAN iteration in fp32). The mask comes in the input's logical order
    (``keep_mask``): the same masks from the same seed in any memory layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.p >= 1.0:
            return x * 0.0
        return x * keep_mask(x, self.p)


def _mask_bits(p: float) -> int:
    """The fewest random bits per element that give keep-probability ``1 - p`` exactly (0.5: 1 bit, 0.25: 2, ...;
    at most 8); 0 when no such number exists (e.g. p = 0.3)."""
    return next((k for k in range(1, 9) if (p * 2**k).is_integer()), 0)


_SHIFTS: dict[tuple[int, torch.device], torch.Tensor] = {}


def keep_mask(x: torch.Tensor, p: float) -> torch.Tensor:
    """Dropout's scaled keep-mask for ``x`` (1 / (1 - p) with probability 1 - p, else 0; ``x``'s dtype), drawn in
    ``x``'s logical (N, C, H, W) order.

    On a CPU, where torch draws one 32-bit number per element from one serial generator, a rate with an exact
    k-bit form (0.5, 0.25, 0.125, ...) takes its mask from the bits of 31-bit random integers: element i keeps
    where its k-bit field is >= p * 2^k, so 31 // k elements share one draw (p = 0.5: 31 masks per draw; a mask
    for a (400, 32, 12, 12) activation 2.6x faster than from uniforms). Other rates, and accelerators, compare
    fp32 uniforms with p (exact rates under bf16 autocast too). Either way the keep decisions are independent
    Bernoulli(1 - p) draws."""
    k = _mask_bits(p) if x.device.type == "cpu" else 0
    if k:
        per, n = 31 // k, x.numel()
        key = (k, x.device)
        if key not in _SHIFTS:
            _SHIFTS[key] = torch.arange(0, per * k, k, dtype=torch.int32, device=x.device)
        draws = torch.empty(-(-n // per), dtype=torch.int32, device=x.device).random_()  # 31 uniform bits each
        fields = (draws.unsqueeze(1) >> _SHIFTS[key]).bitwise_and_(2**k - 1).view(-1)[:n].view(x.shape)
        keep = fields >= round(p * 2**k)
    else:
        keep = random_like(x, torch.rand, torch.float32) >= p
    # a bool tensor converts to floats ~10x slower than its uint8 view on a CPU
    return keep.view(torch.uint8).to(x.dtype).mul_(1.0 / (1.0 - p))


def random_like(x: torch.Tensor, draw=torch.randn, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Random numbers (``torch.rand`` or ``torch.randn``) of ``x``'s shape, drawn in its logical (N, C, H, W) order
    whatever its memory layout: a channels-last run and a contiguous one draw the same numbers from the same seed
    (``torch.randn_like`` fills in memory order, and 8x slower for a channels-last tensor on a CPU)."""
    return draw(x.shape, dtype=dtype or x.dtype, device=x.device)


def make_dropout(p: float, fast: bool = True) -> nn.Dropout:
    """``MaskDropout`` (``fast``, the networks' default) or torch's ``nn.Dropout`` (``fast_dropout=false``)."""
    return MaskDropout(p) if fast else nn.Dropout(p)


class WNLinear(nn.Linear):
    """Weight-normalised linear layer (Salimans & Kingma 2016): ``W_j = g_j * v_j / ||v_j||``.

    With ``train_scale=False`` the scale ``g`` is fixed at 1, as in Triple-GAN's discriminator.
    """

    def __init__(self, in_features: int, out_features: int, train_scale: bool = True, init_std: float = 0.05) -> None:
        super().__init__(in_features, out_features)
        nn.init.normal_(self.weight, std=init_std)
        nn.init.zeros_(self.bias)
        self.scale = nn.Parameter(torch.ones(out_features), requires_grad=train_scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight * (self.scale / self.weight.norm(dim=1).clamp_min(1e-6)).unsqueeze(1)
        return F.linear(x, w, self.bias)


class Maxout(nn.Module):
    """Maxout unit (Goodfellow et al. 2013): the max over ``pieces`` linear pieces per output unit."""

    def __init__(self, in_features: int, out_features: int, pieces: int) -> None:
        super().__init__()
        self.out_features, self.pieces = out_features, pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x).view(-1, self.out_features, self.pieces).amax(dim=2)


class LabelCode(nn.Module):
    """Turns labels into a code to concatenate: one-hot (``mode='onehot'``) or a learned embedding.
    Labels are integer classes ``(N,)`` or class weights ``(N, num_classes)`` (soft labels, e.g. to
    interpolate between classes: the code is the weighted mix of the class codes)."""

    def __init__(self, num_classes: int, mode: str = "onehot", dim: int | None = None) -> None:
        super().__init__()
        if mode not in ("onehot", "embedding"):
            raise ConfigError(f"label mode {mode!r} is not one of ['onehot', 'embedding']")
        if num_classes < 1 or (dim is not None and dim < 1):
            raise ConfigError(
                f"label code of num_classes={num_classes}, dim={dim}: expects num_classes >= 1 (0 in a "
                "network's settings: no label) and a dim of null or >= 1"
            )
        self.num_classes, self.mode = num_classes, mode
        self.dim = num_classes if mode == "onehot" else int(dim or num_classes)
        self.embed = nn.Embedding(num_classes, self.dim) if mode == "embedding" else None

    def forward(self, y: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if y.is_floating_point():
            return (y @ self.embed.weight if self.embed is not None else y).to(dtype)
        if self.embed is not None:
            return self.embed(y).to(dtype)
        return one_hot(y, self.num_classes, dtype)


def one_hot(y: torch.Tensor, num_classes: int, dtype: torch.dtype) -> torch.Tensor:
    """One-hot code of integer labels; class weights ``(N, num_classes)`` pass through unchanged."""
    return y.to(dtype) if y.is_floating_point() else F.one_hot(y, num_classes).to(dtype)


def check_sizes(owner: str, **values) -> None:
    """One-line ConfigError unless every given size (an int, or a list of ints such as hidden widths) is at least 1."""
    for name, value in values.items():
        scalar = isinstance(value, (int, float, str))
        items = [value] if scalar else list(value)  # lists of widths may come as OmegaConf ListConfig
        if any(int(v) < 1 for v in items):
            raise ConfigError(f"{owner} {name}={value if scalar else items}: sizes must be at least 1")


def check_probabilities(owner: str, **values) -> None:
    """One-line ConfigError unless every given value (dropout rates) is in [0, 1)."""
    for name, value in values.items():
        if not 0.0 <= float(value) < 1.0:
            raise ConfigError(f"{owner} {name}={value} must be in [0, 1)")


def check_image_shape(net: str, image_shape, allowed: str, ok: bool) -> tuple[int, int, int]:
    """Raise a one-line ConfigError when a network cannot take the data's image shape."""
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or not ok:
        raise ConfigError(f"{net} cannot take images of shape {shape}; it supports {allowed}")
    return shape


class RandomTranslate(nn.Module):
    """Shifts every image of a batch by its own random whole-pixel offset in [-max_shift, max_shift] along each
    axis (edges replicated), in training mode; identity in eval mode or with ``max_shift=0``. Runs on the batch's
    device, the same in any memory format."""

    def __init__(self, max_shift: int = 2) -> None:
        super().__init__()
        if int(max_shift) != max_shift or max_shift < 0:
            raise ConfigError(f"RandomTranslate: max_shift={max_shift} must be a whole number >= 0")
        self.max_shift = int(max_shift)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.max_shift
        if not self.training or m == 0:
            return x
        n, c, h, w = x.shape
        padded = F.pad(x, (m, m, m, m), mode="replicate")
        offsets = torch.randint(0, 2 * m + 1, (2, n, 1), device=x.device)
        rows = (offsets[0] + torch.arange(h, device=x.device)).view(n, 1, h, 1).expand(n, c, h, w + 2 * m)
        cols = (offsets[1] + torch.arange(w, device=x.device)).view(n, 1, 1, w).expand(n, c, h, w)
        return padded.gather(2, rows).gather(3, cols)


class RandomAffine(nn.Module):
    """Draws one random affine map per image of a batch, in training mode: rotation by up to ``degrees``,
    isotropic scaling by a factor in ``scale``, shift by up to ``translate`` pixels along each axis; resampled
    bilinearly with edges replicated. Identity in eval mode. Runs on the batch's device, batched (no loop over
    images), in any memory format."""

    def __init__(self, degrees: float = 10.0, translate: float = 2.0, scale: tuple[float, float] = (0.9, 1.1)) -> None:
        super().__init__()
        lo, hi = (float(s) for s in scale)
        if degrees < 0 or translate < 0:
            raise ConfigError(f"RandomAffine: degrees={degrees} and translate={translate} must be >= 0")
        if not 0 < lo <= hi:
            raise ConfigError(f"RandomAffine: scale={list(scale)} must be a range [low, high] with 0 < low <= high")
        self.degrees, self.translate, self.scale = float(degrees), float(translate), (lo, hi)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        n, _, h, w = x.shape
        u = torch.rand(4, n, device=x.device, dtype=torch.float32) * 2 - 1  # uniform in [-1, 1]
        angle = u[0] * self.degrees * torch.pi / 180
        lo, hi = self.scale
        zoom = lo + (hi - lo) * (u[1] + 1) / 2
        cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom  # output -> input coordinates
        # grid coordinates run over [-1, 1]: a shift of t pixels is 2 t / size
        tx, ty = u[2] * self.translate * 2 / w, u[3] * self.translate * 2 / h
        theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
        grid = F.affine_grid(theta, [n, 1, h, w], align_corners=False)
        out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
        return out.to(x.dtype)


class RandomErase(nn.Module):
    """Sets one random ``size`` x ``size`` square of every image of a batch to ``value`` (cutout, DeVries & Taylor
    2017), in training mode; the square may stick out of the image. Identity in eval mode or with ``size=0``."""

    def __init__(self, size: int = 8, value: float = 0.0) -> None:
        super().__init__()
        if int(size) != size or size < 0:
            raise ConfigError(f"RandomErase: size={size} must be a whole number >= 0")
        self.size, self.value = int(size), float(value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.size == 0:
            return x
        n, _, h, w = x.shape
        top = torch.randint(-self.size + 1, h, (n, 1, 1, 1), device=x.device)
        left = torch.randint(-self.size + 1, w, (n, 1, 1, 1), device=x.device)
        rows = torch.arange(h, device=x.device).view(1, 1, h, 1)
        cols = torch.arange(w, device=x.device).view(1, 1, 1, w)
        inside = (rows >= top) & (rows < top + self.size) & (cols >= left) & (cols < left + self.size)
        return x.masked_fill(inside, self.value)
