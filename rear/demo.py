"""The newcomer's first run: sample a class-by-class grid from a small generator.

Until tokenizer training and generator training land, the generator is randomly initialised and the
tokenizer is a stand-in palette (each code decodes to a fixed random 4x4 RGB patch).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import torch

from rear.config import generator_preset
from rear.generator import Generator
from rear.images import save_grid


class PaletteDecoder:
    """Stand-in tokenizer: code k -> a fixed random RGB patch; ids [B, N] -> images [B, 3, H, W]."""

    def __init__(self, codebook_size: int, patch: int = 4, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.patch = patch
        self.palette = torch.rand(codebook_size, 3, patch, patch, generator=g)  # [K, 3, p, p]

    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        B, N = ids.shape
        side = math.isqrt(N)
        patches = self.palette[ids].view(B, side, side, 3, self.patch, self.patch)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(B, 3, side * self.patch, side * self.patch)


def run_demo(out: Path, samples_per_class: int = 8, num_classes: int = 10, seed: int = 0) -> Path:
    """Build a `rear-cpu` generator for 8x8 tokens, sample with CFG and write `out/samples.png`."""
    torch.manual_seed(seed)
    config = generator_preset("rear-cpu", codebook_size=512, num_classes=num_classes, num_tokens=64)
    model = Generator(config).eval()
    with torch.no_grad():  # untrained: give the adaLN gates random values so classes differ
        for p in model.parameters():
            p.normal_(0, 0.05)
    labels = torch.arange(num_classes).repeat_interleave(samples_per_class)
    start = time.perf_counter()
    tokens = model.generate(labels, cfg_scale=4.0, cfg_power=2.5, generator=torch.Generator().manual_seed(seed))
    elapsed = time.perf_counter() - start
    images = PaletteDecoder(config.codebook_size).decode(tokens)
    path = save_grid(images, Path(out) / "samples.png", columns=samples_per_class)
    print(f"sampled {len(labels)} images ({len(labels) / elapsed:.1f} images/s) from a random "
          f"{model.num_parameters() / 1e6:.1f}M-parameter generator; one row per class")
    return path
