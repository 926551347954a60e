"""When bfloat16 autocast pays: CUDA with bf16 support, or a CPU with native bf16 instructions.

On CPUs without AVX512-BF16 or AMX (e.g. AVX2-only EPYC/Core parts) bf16 matmuls and convs are
emulated and run many times slower than float32, so `bf16: true` in a config means "where fast".
"""
from __future__ import annotations

import torch


def native_bf16(device: torch.device | str) -> bool:
    """True if bfloat16 compute runs natively on `device`."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    return False


def autocast(device: torch.device | str, bf16: bool) -> torch.autocast:
    """bf16 autocast on `device` when asked for and native there; a disabled context otherwise."""
    device = torch.device(device)
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16 and native_bf16(device))
