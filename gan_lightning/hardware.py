"""Facts about the machine that configs can ask for."""

from __future__ import annotations

from functools import cache
from pathlib import Path

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


@cache
def cpu_has_native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU multiplies bf16 in hardware (x86 ``avx512_bf16`` or ``amx_bf16``). Without them bf16
    autocast on the CPU is emulated and slower than fp32."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return any(flag in flags for flag in NATIVE_BF16_FLAGS)


def cpu_precision() -> str:
    """Lightning precision for training on this CPU: ``bf16-mixed`` where bf16 is native, else ``32-true``."""
    return "bf16-mixed" if cpu_has_native_bf16() else "32-true"


def auto_precision() -> str:
    """The default trainer's precision: ``32-true`` with a CUDA GPU (the paper's arithmetic; its speed comes from CUDA
    graphs), else ``cpu_precision()``."""
    import torch

    return "32-true" if torch.cuda.is_available() else cpu_precision()
