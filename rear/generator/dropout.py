"""Dropout whose CPU mask costs less than half of ATen's: both backbones' drop-in for nn.Dropout.

ATen's CPU dropout draws its mask with `bernoulli_`, one mt19937 draw per element (about 10 ns each
on the AVX2 EPYC of benchmarks/README.md: 11% of a reAR training step at the issue's CPU setting).
Here one `random_` call fills 64 random bits, read as two int32 draws, and an element is kept when
its draw is at least round(p * 2^32) above the int32 minimum: the keep probability is 1 - p to
within 2^-33 (finer than a float32 uniform). Kept elements are scaled by 1 / (1 - p), as ATen's.
Off the CPU (CUDA's fused Philox kernel is fast) it is F.dropout. No parameters or buffers: state
dicts are those of nn.Dropout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def keep_mask(shape: torch.Size, p: float) -> torch.Tensor:
    """Bool [shape]: True with probability 1 - p, from the default CPU generator."""
    n = shape.numel()
    bits = torch.empty((n + 1) // 2, dtype=torch.int64).random_(-(2**63), None)  # every bit random
    draws = bits.view(torch.int32)[:n].view(shape)  # uniform on [-2^31, 2^31)
    return draws >= -(2**31) + round(p * 2**32)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """F.dropout(x, p, training), with the mask drawn by `keep_mask` on a CPU."""
    if not training or p == 0:
        return x
    if x.device.type != "cpu" or p >= 1:
        return F.dropout(x, p, training)
    scale = torch.full((), 1 / (1 - p), dtype=x.dtype)
    return x * torch.where(keep_mask(x.shape, p), scale, 0)  # backward: grad * the same factor


class Dropout(nn.Dropout):
    """nn.Dropout with `dropout`'s CPU mask."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)
