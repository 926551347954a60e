"""A small convolutional VQ tokenizer that users train on their own images (rear tokenizer train).

Encoder: a 3x3 stem at full resolution, then per level a strided conv and GroupNorm+SiLU residual
blocks, a 1x1 projection to Z dims and l2 normalisation. The codebook holds unit vectors too, so the
squared-L2 lookup of `VQTokenizer.encode` is a cosine lookup. Decoder: the mirror image with nearest
upsampling. A folder holds `model.safetensors` and `config.json` (the ConvVQConfig).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rear.weights import CONFIG, WEIGHTS, load_state, read_tensors
from rear.config import ConvVQConfig, merge, to_dict
from rear.tokenizer.base import Codebook, VQTokenizer, nearest_codes


class ResBlock(nn.Module):
    """x + conv2(silu(gn(conv1(silu(gn(x))))))."""

    def __init__(self, width: int, groups: int) -> None:
        super().__init__()
        self.norm1, self.conv1 = nn.GroupNorm(groups, width), nn.Conv2d(width, width, 3, padding=1)
        self.norm2, self.conv2 = nn.GroupNorm(groups, width), nn.Conv2d(width, width, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # [B, W, h, w]
        return x + self.conv2(F.silu(self.norm2(h)))


class Level(nn.Module):
    """A resampling step into one resolution, then that resolution's residual blocks."""

    def __init__(self, resample: nn.Module, width: int, blocks: int, groups: int) -> None:
        super().__init__()
        self.resample = resample
        self.blocks = nn.Sequential(*(ResBlock(width, groups) for _ in range(blocks)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.resample(x))


class UnitNorm(nn.Module):
    """l2-normalise along channels, in float32 (also under bf16 autocast)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x.float(), dim=1)


def build_encoder(config: ConvVQConfig) -> nn.Sequential:
    """images [B, C, H, W] -> unit latents [B, Z, h, w]."""
    widths, g = config.widths, config.groups
    stem = nn.Sequential(nn.Conv2d(config.channels, widths[0], 3, padding=1), nn.SiLU())
    levels = [Level(stem, widths[0], config.res_blocks[0], g)]
    for cin, cout, blocks in zip(widths, widths[1:], config.res_blocks[1:]):
        levels.append(Level(nn.Conv2d(cin, cout, 4, stride=2, padding=1), cout, blocks, g))
    head = [nn.GroupNorm(g, widths[-1]), nn.SiLU(), nn.Conv2d(widths[-1], config.code_dim, 1), UnitNorm()]
    return nn.Sequential(*levels, *head)


def build_decoder(config: ConvVQConfig) -> nn.Sequential:
    """latents [B, Z, h, w] -> images [B, C, H, W] (unclamped)."""
    widths, g = config.widths, config.groups
    levels = [Level(nn.Conv2d(config.code_dim, widths[-1], 3, padding=1), widths[-1], config.res_blocks[-1], g)]
    for cin, cout, blocks in zip(widths[::-1], widths[-2::-1], config.res_blocks[-2::-1]):
        up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, padding=1))
        levels.append(Level(up, cout, blocks, g))
    head = [nn.GroupNorm(g, widths[0]), nn.SiLU(), nn.Conv2d(widths[0], config.channels, 3, padding=1)]
    return nn.Sequential(*levels, *head)


class ConvVQTokenizer(VQTokenizer):
    """Encoder, unit-vector codebook and decoder built from a ConvVQConfig."""

    def __init__(self, config: ConvVQConfig) -> None:
        super().__init__()
        self.config = config.validate()
        self.image_size, self.channels = config.image_size, config.channels
        side = config.image_size // 2 ** (len(config.widths) - 1)
        self.grid = (side, side)
        self.encoder = build_encoder(config)
        self.decoder = build_decoder(config)
        self.quantize = Codebook(config.codebook_size, config.code_dim)
        with torch.no_grad():
            self.quantize.embedding.weight.copy_(F.normalize(self.quantize.embedding.weight, dim=1))
        self.to(memory_format=torch.channels_last)  # oneDNN's CPU convs run faster in NHWC

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] in [0, 1] -> token ids [B, N] (raster, row-major)."""
        return super().encode(images.contiguous(memory_format=torch.channels_last))

    def config_files(self) -> dict[str, str]:
        return {CONFIG: json.dumps(to_dict(self.config), indent=2)}

    def quantize_latents(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """latents [B, Z, h, w] -> (nearest codes [B, Z, h, w], ids [B, N])."""
        ids = nearest_codes(latents.detach(), self.quantize.embedding.weight)  # [B, N]
        return self.latents(ids), ids


def load_conv_vq(folder: str | Path) -> ConvVQTokenizer:
    """Rebuild a tokenizer saved by `save_pretrained` or `rear tokenizer train` (eval mode, on the CPU)."""
    folder = Path(folder)
    for name in (WEIGHTS, CONFIG):
        if not (folder / name).is_file():
            raise FileNotFoundError(
                f"{folder / name} not found; a conv VQ tokenizer is a folder with {WEIGHTS} and {CONFIG} "
                "(train one with `rear tokenizer train`)"
            )
    tokenizer = ConvVQTokenizer(merge(ConvVQConfig, str(folder / CONFIG)))
    load_state(tokenizer, read_tensors(folder / WEIGHTS), str(folder / WEIGHTS))
    return tokenizer.eval()
