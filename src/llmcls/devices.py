"""Per-device defaults: which reduced precision the hardware runs fast, and CPU threads."""

from __future__ import annotations

import torch


def cpu_has_fast_bf16() -> bool:
    """AVX-512 bf16 or AMX: bf16 autocast on this CPU was measured ~2x faster than fp32 (README)."""
    cpu = torch.backends.cpu
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return hasattr(cpu, "get_cpu_capability") and any(check is not None and check() for check in checks)


def resolve_precision(precision: str) -> str:
    """Turn params `train.precision` ('auto' included) into fp32 / bf16 / fp16 for this machine."""
    if precision != "auto":
        return precision
    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if cpu_has_fast_bf16() else "fp32"


def autocast_dtype(precision: str) -> torch.dtype | None:
    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
