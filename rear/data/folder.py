"""Image-folder datasets (ImageNet layout: one sub-folder per class) with the ADM center crop."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image

EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff", ".ppm", ".jfif"}


def center_crop(image: Image.Image, size: int) -> Image.Image:
    """ADM's center crop: halve with BOX while >= 2x size, bicubic-resize the short side, crop."""
    while min(image.size) >= 2 * size:
        image = image.resize(tuple(x // 2 for x in image.size), resample=Image.BOX)
    scale = size / min(image.size)
    image = image.resize(tuple(round(x * scale) for x in image.size), resample=Image.BICUBIC)
    left, top = (image.size[0] - size) // 2, (image.size[1] - size) // 2
    return image.crop((left, top, left + size, top + size))


class ImageFolder(torch.utils.data.Dataset):
    """root/<class>/<image>: items (image [C, S, S] float in [0, 1] or None if unreadable, label)."""

    def __init__(self, root: str | Path, size: int, channels: int = 3) -> None:
        self.root, self.size = Path(root), size
        self.mode = {1: "L", 3: "RGB"}[channels]
        if not self.root.is_dir():
            raise FileNotFoundError(f"image folder {self.root} does not exist")
        self.classes = sorted(p.name for p in self.root.iterdir() if p.is_dir())
        if not self.classes:
            raise ValueError(f"{self.root} has no class sub-folders; expected root/<class>/<image files>")
        self.files: list[tuple[Path, int]] = [
            (path, label)
            for label, name in enumerate(self.classes)
            for path in sorted((self.root / name).rglob("*"))
            if path.suffix.lower() in EXTENSIONS
        ]
        if not self.files:
            raise ValueError(f"{self.root} holds no image files ({', '.join(sorted(EXTENSIONS))})")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | None, int]:
        path, label = self.files[index]
        try:
            with Image.open(path) as image:
                image = center_crop(image.convert(self.mode), self.size)
        except (OSError, ValueError, Image.DecompressionBombError):
            return None, label
        array = np.asarray(image, dtype=np.float32) / 255
        tensor = torch.from_numpy(array[None] if array.ndim == 2 else array.transpose(2, 0, 1).copy())
        return tensor, label


def warn_skipped(skipped: list[str], strict: bool) -> None:
    """Fail (strict) or warn once with the list of unreadable files."""
    if not skipped:
        return
    listing = ", ".join(skipped[:10]) + (f" and {len(skipped) - 10} more" if len(skipped) > 10 else "")
    if strict:
        raise ValueError(f"{len(skipped)} unreadable image file(s): {listing}; fix or remove them, or drop --strict")
    warnings.warn(f"skipped {len(skipped)} unreadable image file(s): {listing}", stacklevel=2)
