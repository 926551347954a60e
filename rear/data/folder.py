"""Image-folder datasets (ImageNet layout: one sub-folder per class) with the ADM center crop."""
from __future__ import annotations

import hashlib
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


HELDOUT_FRACTION = 0.1  # FOLDER:heldout; fixed, so the name means the same images in every command
PARTS = ("train", "heldout")


def heldout_indices(files: list[tuple[Path, int]], root: Path) -> set[int]:
    """Per class, the round(10%) files (at least one of two or more) whose relative paths hash
    lowest: a split that depends only on the files' names, stable under renaming the root."""
    by_class: dict[int, list[tuple[str, int]]] = {}
    for index, (path, label) in enumerate(files):
        key = hashlib.sha256(path.relative_to(root).as_posix().encode()).hexdigest()
        by_class.setdefault(label, []).append((key, index))
    heldout = set()
    for items in by_class.values():
        count = max(1, round(len(items) * HELDOUT_FRACTION)) if len(items) >= 2 else 0
        heldout.update(index for _, index in sorted(items)[:count])
    return heldout


def infer_channels(root: str | Path, probe: int = 64) -> int:
    """1 when the first `probe` images (spread over the folder) are all grayscale, else 3."""
    files = ImageFolder(root, size=0, channels=3).files
    for path, _ in files[:: max(1, len(files) // probe)]:
        try:
            with Image.open(path) as image:
                if image.mode not in ("1", "L", "LA", "I", "I;16", "F"):
                    rgb = np.asarray(image.convert("RGB"), dtype=np.int16)
                    if (rgb != rgb[..., :1]).any():
                        return 3
        except (OSError, ValueError, Image.DecompressionBombError):
            continue
    return 1


class ImageFolder(torch.utils.data.Dataset):
    """root/<class>/<image>: items (image [C, S, S] float in [0, 1] or None if unreadable, label).

    `part` keeps the "train" (90%) or "heldout" (10%) files of `heldout_indices`; None keeps all."""

    def __init__(self, root: str | Path, size: int, channels: int = 3, part: str | None = None) -> None:
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
        empty = sorted(set(self.classes) - {self.classes[label] for _, label in self.files})
        if empty:  # a class with no images would be trained and sampled without ever being seen
            raise ValueError(f"{self.root}: class folder(s) {', '.join(empty[:5])} hold no image files; add images "
                             "or remove the folder(s)")
        if part is not None:
            if part not in PARTS:
                raise ValueError(f"unknown part {part!r} of {self.root}; choose one of {', '.join(PARTS)}")
            heldout = heldout_indices(self.files, self.root)
            self.files = [f for i, f in enumerate(self.files) if (i in heldout) == (part == "heldout")]
            if not self.files:
                raise ValueError(f"{self.root}:{part} is empty; a class needs at least two images to hold one out")

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
