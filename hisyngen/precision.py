"""Numeric precision of the discriminators (training, scoring, the realism judge): one home for
detecting native bf16, resolving ``auto`` and entering the matching autocast context.

``fp32`` is plain float32 (on a CPU exactly what hisyngen ran before precision was a setting).
``bf16`` is ``torch.autocast(dtype=torch.bfloat16)`` over float32 weights: convolutions and matrix
products run in bfloat16, BatchNorm, the loss and the optimiser's master weights stay float32, so
training needs no loss scaling. ``fp16`` is float16 autocast with loss scaling, CUDA only (what
hisyngen ran on CUDA before). ``auto`` is bf16 where the hardware computes it natively (a CPU with
AMX or AVX-512-BF16, a CUDA device of compute capability 8 or later), else fp16 on CUDA and fp32 on
a CPU.

Models are kept channels-last (NHWC) in every precision: oneDNN's bf16 convolutions want it, and
fp32 already ran that way.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, ContextManager

from hisyngen.errors import HisynError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
"""Values of ``--precision`` (and the build config's ``precision``)."""

CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
"""/proc/cpuinfo flags of native bf16 matrix instructions (Intel AMX, AVX-512-BF16 on Intel and AMD)."""


def check_precision(name: Any) -> str:
    """``name`` if it is one of :data:`PRECISIONS`, else a one-line error."""
    if name not in PRECISIONS:
        raise HisynError(f"--precision {name!r} is not one of {', '.join(PRECISIONS)}")
    return name


def cpu_bf16_flags(cpuinfo: str | None = None) -> tuple[str, ...]:
    """The native-bf16 flags this CPU advertises (``cpuinfo``: the text of /proc/cpuinfo, read when None).

    Without a /proc/cpuinfo (macOS, Windows), torch's own CPUID probes answer for the same features.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return _torch_cpu_bf16_flags()
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            flags.update(value.split())
    return tuple(f for f in CPU_BF16_FLAGS if f in flags)


def _torch_cpu_bf16_flags() -> tuple[str, ...]:
    import torch

    probes = {"amx_bf16": "_is_amx_tile_supported", "avx512_bf16": "_is_avx512_bf16_supported"}
    return tuple(flag for flag, probe in probes.items() if getattr(torch.cpu, probe, lambda: False)())


def native_bf16(device: Any, cpuinfo: str | None = None) -> bool:
    """Whether ``device`` (a torch.device) computes bf16 matrix products natively, not emulated."""
    import torch

    if device.type == "cuda":
        # including_emulation=False: a pre-Ampere GPU "supports" bf16 only through slow emulation.
        with torch.cuda.device(device):
            return bool(torch.cuda.is_bf16_supported(including_emulation=False))
    return bool(cpu_bf16_flags(cpuinfo))


def resolve_precision(requested: str, device: Any, cpuinfo: str | None = None) -> str:
    """The precision (fp32, bf16 or fp16) that ``requested`` means on ``device``.

    An explicit bf16 on hardware without native bf16, or fp16 on a CPU, is refused rather than
    warned about: it would run slower than fp32 there (emulated kernels) and give scores that
    differ from fp32 for nothing.
    """
    check_precision(requested)
    if requested == "auto":
        if native_bf16(device, cpuinfo):
            return "bf16"
        return "fp16" if device.type == "cuda" else "fp32"
    if requested == "bf16" and not native_bf16(device, cpuinfo):
        what = ("this GPU has no native bf16 (compute capability < 8)" if device.type == "cuda" else
                f"this CPU has no native bf16 matrix instructions ({' or '.join(CPU_BF16_FLAGS)} in /proc/cpuinfo)")
        raise HisynError(f"--precision bf16: {what}, so bf16 would be emulated and slower than fp32; "
                         "use --precision auto or fp32")
    if requested == "fp16" and device.type != "cuda":
        raise HisynError("--precision fp16 is for CUDA devices; on a CPU use auto, bf16 or fp32")
    return requested


def autocast(precision: str, device: Any) -> ContextManager[Any]:
    """The autocast context of a resolved ``precision`` on ``device`` (a no-op for fp32)."""
    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device.type, dtype=dtype)
