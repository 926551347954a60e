"""Image grids as PNG files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """images [B, C, H, W] in [0, 1] -> uint8 [B, H, W, C] (C = 1 or 3)."""
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def tile(images: torch.Tensor, columns: int, padding: int = 2) -> Image.Image:
    """Tile images [B, C, H, W] in [0, 1] row by row, `columns` per row, on white: one PIL image."""
    pixels = to_uint8(images)  # [B, H, W, C]
    B, H, W, C = pixels.shape
    rows = -(-B // columns)
    grid = np.full((rows * (H + padding) + padding, columns * (W + padding) + padding, C), 255, np.uint8)
    for i, image in enumerate(pixels):
        top, left = padding + (i // columns) * (H + padding), padding + (i % columns) * (W + padding)
        grid[top : top + H, left : left + W] = image
    return Image.fromarray(grid[..., 0] if C == 1 else grid)


def save_grid(images: torch.Tensor, path: str | Path, columns: int, padding: int = 2) -> Path:
    """`tile` written as a PNG at `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tile(images, columns, padding).save(path)
    return path


def class_grid(images: np.ndarray, labels: np.ndarray, path: str | Path, num_classes: int, per_class: int = 10) -> Path:
    """A PNG with one row per class: the first `per_class` of uint8 images [n, H, W, C] of each class."""
    picks = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(num_classes)])
    x = torch.from_numpy(images[picks]).float().div(255).permute(0, 3, 1, 2)  # [n, C, H, W]
    gray = x.shape[1] == 3 and bool((x == x[:, :1]).all())
    return save_grid(x[:, :1] if gray else x, path, columns=per_class)
