"""MaskGIT-VQGAN (ImageNet, f16, 1024 codes x 256 dims): the tokenizer of the reAR release.

Layout of the public `maskgit-vqgan-imagenet-f16-256.bin` (docs/method.md, 6); module names
equal its state-dict keys, so loading is a key copy. All convs are stride 1, so TF "SAME" padding is
the symmetric k // 2.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rear.weights import load_state
from rear.tokenizer.base import Codebook, VQTokenizer

HIDDEN, MULTIPLIERS, BLOCKS, LATENT, CODES = 128, (1, 1, 2, 2, 4), 2, 256, 1024


def conv(cin: int, cout: int, kernel: int, bias: bool) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=bias)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """h = conv2(silu(gn(conv1(silu(gn(x)))))); returns x + h, or h + shortcut(h) if channels change."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), conv(cin, cout, 3, bias=False)
        self.norm2, self.conv2 = group_norm(cout), conv(cout, cout, 3, bias=False)
        self.nin_shortcut = conv(cout, cout, 1, bias=False) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        # the release applies the shortcut to h, not x, when the width changes
        return h + (self.nin_shortcut(h) if self.nin_shortcut is not None else x)


class Level(nn.Module):
    """Residual blocks of one resolution, then an optional resampling."""

    def __init__(self, cin: int, cout: int, upsample: bool = False) -> None:
        super().__init__()
        self.block = nn.ModuleList([ResnetBlock(cin, cout)] + [ResnetBlock(cout, cout) for _ in range(BLOCKS - 1)])
        self.upsample_conv = conv(cout, cout, 3, bias=True) if upsample else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        if self.upsample_conv is not None:
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class Encoder(nn.Module):
    """[B, 3, 256, 256] -> [B, 256, 16, 16]."""

    def __init__(self) -> None:
        super().__init__()
        widths = [HIDDEN * m for m in MULTIPLIERS]
        self.conv_in = conv(3, HIDDEN, 3, bias=False)
        self.down = nn.ModuleList(Level(cin, cout) for cin, cout in zip([HIDDEN] + widths[:-1], widths))
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1]) for _ in range(BLOCKS))
        self.norm_out = group_norm(widths[-1])
        self.conv_out = conv(widths[-1], LATENT, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for i, level in enumerate(self.down):
            x = level(x)
            if i < len(self.down) - 1:
                x = F.avg_pool2d(x, 2)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    """[B, 256, 16, 16] -> [B, 3, 256, 256] (unclamped)."""

    def __init__(self) -> None:
        super().__init__()
        widths = [HIDDEN * m for m in MULTIPLIERS]
        self.conv_in = conv(LATENT, widths[-1], 3, bias=True)
        self.mid = nn.ModuleList(ResnetBlock(widths[-1], widths[-1]) for _ in range(BLOCKS))
        # up[i] maps widths[i+1] (widths[-1] for the last) to widths[i]; applied from up[4] down to up[0]
        inputs = widths[1:] + widths[-1:]
        self.up = nn.ModuleList(Level(inputs[i], widths[i], upsample=i > 0) for i in range(len(widths)))
        self.norm_out = group_norm(widths[0])
        self.conv_out = conv(widths[0], 3, 3, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.mid:
            x = block(x)
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class MaskGITVQGAN(VQTokenizer):
    """The MaskGIT-VQGAN tokenizer: 256x256 RGB <-> 16x16 tokens of 1024 codes, 256-dim vectors."""

    image_size, channels, grid = 256, 3, (16, 16)

    def __init__(self) -> None:
        super().__init__()
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.quantize = Codebook(CODES, LATENT)


def load_maskgit_vqgan(path: str | Path, device: str | torch.device = "cpu") -> MaskGITVQGAN:
    """Load `maskgit-vqgan-imagenet-f16-256.bin` (a plain state dict, read with weights_only=True)."""
    from rear.weights import read_state_dict

    state = read_state_dict(path)
    model = MaskGITVQGAN()
    load_state(model, state, str(path))
    return model.to(device).eval().requires_grad_(False)
