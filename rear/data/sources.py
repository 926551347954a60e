"""Where images come from: Fashion-MNIST splits and image folders, named the same way by every command
(`fashion-mnist:train`, `FOLDER`, `FOLDER:train`, `FOLDER:heldout`), read in batches at any size."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rear.data.fashion_mnist import CLASSES as FASHION_CLASSES
from rear.data.fashion_mnist import load_fashion_mnist, to_tensor
from rear.data.folder import PARTS, ImageFolder, warn_skipped


@dataclass
class Source:
    """Where images come from: a stable identity, item count, class names and a batch reader."""

    identity: str
    num_items: int
    class_names: list[str]
    # (start, stop, size) -> (images [b, C, size, size] in [0, 1], labels [b], unreadable paths)
    read: Callable[[int, int, int], tuple[torch.Tensor, torch.Tensor, list[str]]]


def fashion_mnist_source(split: str, data_dir: str | None = None, channels: int = 1,
                         subset: tuple[str, np.ndarray] | None = None) -> Source:
    """Fashion-MNIST, 28x28 zero-padded to the tokenizer's size; `subset` = (name, indices) keeps
    only those images, in that order (a named part of a split, e.g. a study's training images)."""
    images, labels = load_fashion_mnist(split, data_dir)
    identity = f"fashion-mnist:{split}"
    if subset is not None:
        name, indices = subset
        images, labels, identity = images[indices], labels[indices], f"{identity}[{name}]"

    def read(start: int, stop: int, size: int):
        x = to_tensor(images[start:stop], size)
        return x.expand(-1, channels, -1, -1), torch.from_numpy(labels[start:stop]), []

    return Source(identity, len(images), list(FASHION_CLASSES), read)


def folder_source(root: str | Path, channels: int = 3, part: str | None = None, workers: int = 4) -> Source:
    """An image folder (one sub-folder per class), all of it or one `part` (train / heldout), ADM
    center crop; unreadable files are reported."""
    folder = ImageFolder(root, size=0, channels=channels, part=part)

    def read(start: int, stop: int, size: int):
        folder.size = size
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(folder, range(start, stop)),
            batch_size=stop - start,
            num_workers=min(workers, os.cpu_count() or 1),
            collate_fn=list,
        )
        items = next(iter(loader))
        good = [(x, y) for x, y in items if x is not None]
        skipped = [str(folder.files[start + i][0]) for i, (x, _) in enumerate(items) if x is None]
        if not good:
            return torch.empty(0, channels, size, size), torch.empty(0, dtype=torch.long), skipped
        return torch.stack([x for x, _ in good]), torch.tensor([y for _, y in good]), skipped

    name = f"folder:{Path(root).resolve()}" + (f":{part}" if part else "")
    return Source(name, len(folder), folder.classes, read)


def parse_source(spec: str) -> tuple[str, str | None]:
    """`fashion-mnist[:SPLIT]` -> ("fashion-mnist", SPLIT or None); `FOLDER[:train|:heldout]` -> (FOLDER, part or None)."""
    head, _, tail = spec.rpartition(":")
    if spec == "fashion-mnist":
        return spec, None
    if spec.startswith("fashion-mnist"):
        if tail not in ("train", "test") or head != "fashion-mnist":
            raise ValueError(f"unknown source {spec!r}; Fashion-MNIST is fashion-mnist:train or fashion-mnist:test")
        return "fashion-mnist", tail
    if head and tail in PARTS:
        return head, tail
    return spec, None


def split_parts(spec: str) -> tuple[str, str]:
    """The (training, held-out) parts of a source: fashion-mnist:train and :test, FOLDER:train and :heldout."""
    root, _ = parse_source(spec)
    return ("fashion-mnist:train", "fashion-mnist:test") if root == "fashion-mnist" else (f"{root}:train", f"{root}:heldout")


def open_source(spec: str, channels: int, data_dir: str | None = None) -> Source:
    """`fashion-mnist:train`, `fashion-mnist:test`, or an image folder: `FOLDER` (every image),
    `FOLDER:train` or `FOLDER:heldout` (rear.data.folder.heldout_indices)."""
    root, part = parse_source(spec)
    if root == "fashion-mnist":
        if part is None:
            raise ValueError("name a split of Fashion-MNIST: fashion-mnist:train or fashion-mnist:test")
        return fashion_mnist_source(part, data_dir, channels)
    return folder_source(root, channels, part)


def source_spec(identity: str) -> str:
    """The spec that reopens a store's recorded source (`Source.identity`), e.g. for its images."""
    if identity.startswith("folder:"):
        return identity[len("folder:"):]
    if identity in ("fashion-mnist:train", "fashion-mnist:test"):
        return identity
    raise ValueError(f"the store's source {identity!r} cannot be reopened by name (a subset made in code)")


def read_all(source: Source, size: int, strict: bool = False, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image [n, C, size, size] in [0, 1] and label [n] of a source (unreadable files warned
    about), read `chunk` at a time (worker processes pass each image through a file descriptor)."""
    parts = [source.read(start, min(start + chunk, source.num_items), size) for start in range(0, source.num_items, chunk)]
    warn_skipped([path for _, _, skipped in parts for path in skipped], strict)
    return torch.cat([images for images, _, _ in parts]), torch.cat([labels for _, labels, _ in parts])
