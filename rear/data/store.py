"""The pretokenized store: token ids of every image view, memory-mapped, with a JSON manifest.

Folder layout:  codes.npy  uint16 [capacity, V, N]   (only the first `num_items` rows are valid)
                labels.npy int32  [capacity]
                manifest.json     tokenizer identity and fingerprint, grid, views, classes, counts, and
                                  the sha256 of the finished arrays (the store's content, for runs to record)
Writing goes chunk by chunk; the manifest (rewritten atomically after each chunk) records how far
it got, so an interrupted run resumes where it stopped. Reading never loads the arrays whole.
"""
from __future__ import annotations

import hashlib
import json
from functools import cached_property
from pathlib import Path

import numpy as np
import torch

from rear.data.folder import warn_skipped
from rear.data.sources import Source
from rear.lock import locked
from rear.progress import bar as progress_bar
from rear.tokenizer.base import VQTokenizer
from rear.weights import replace_file

FORMAT, VERSION = "rear-token-store", 1
CODES, LABELS, MANIFEST = "codes.npy", "labels.npy", "manifest.json"
TEN_CROP_SCALE = 1.1  # ten crops of S from a center crop of 1.1 S, as in the reAR release


# ------------------------------------------------------------------ views
def flip_views(images: torch.Tensor) -> torch.Tensor:
    """images [B, C, S, S] -> [B, 2, C, S, S]: as is, mirrored left-right."""
    return torch.stack([images, images.flip(-1)], dim=1)


def ten_crop_views(images: torch.Tensor, size: int) -> torch.Tensor:
    """images [B, C, L, L] (L > size) -> [B, 10, C, size, size]: 4 corners + center, then mirrored."""
    L = images.shape[-1]
    c = (L - size) // 2
    corners = [(0, 0), (0, L - size), (L - size, 0), (L - size, L - size), (c, c)]
    crops = torch.stack([images[..., y : y + size, x : x + size] for y, x in corners], dim=1)
    return torch.cat([crops, crops.flip(-1)], dim=1)


# ------------------------------------------------------------------ writing
def _write_manifest(folder: Path, manifest: dict) -> None:
    replace_file(folder / MANIFEST, json.dumps(manifest, indent=2))


@locked(lambda out, **_: out)
def pretokenize(
    source: Source,
    tokenizer: VQTokenizer,
    out: str | Path,
    *,
    tokenizer_path: str,
    ten_crop: bool = False,
    flip: bool = True,
    batch_size: int = 128,  # 256 encodes a batch with flips: the fastest size on a 2-core CPU
    strict: bool = False,
    progress: bool = True,
) -> Path:
    """Encode every image of `source` in 2 (as is + flip; 1 without `flip`) or 10 (ten-crop) views."""
    if tokenizer.codebook_size > 2**16:
        raise ValueError(f"codebook of {tokenizer.codebook_size} codes does not fit uint16 ids")
    out = Path(out)
    S = tokenizer.image_size
    read_size = int(S * TEN_CROP_SCALE) if ten_crop else S
    if ten_crop:  # images [b, C, S', S'] -> views [b, V, C, S, S]
        views = [f"crop{i}" for i in range(5)] + [f"crop{i}-flip" for i in range(5)]
        expand = lambda x: ten_crop_views(x, S)  # noqa: E731
    elif flip:
        views, expand = ["as-is", "flip"], flip_views
    else:
        views, expand = ["as-is"], lambda x: x[:, None]
    identity = {
        "format": FORMAT,
        "version": VERSION,
        "source": source.identity,
        "tokenizer": {"class": type(tokenizer).__name__, "path": tokenizer_path, "fingerprint": tokenizer.fingerprint()},
        "codebook_size": tokenizer.codebook_size,
        "code_dim": tokenizer.code_dim,
        "grid": list(tokenizer.grid),
        "num_tokens": tokenizer.num_tokens,
        "image_size": S,
        "channels": tokenizer.channels,
        "views": views,
        "class_names": source.class_names,
        "num_classes": len(source.class_names),
        "capacity": source.num_items,
    }
    if (out / MANIFEST).is_file():
        manifest = json.loads((out / MANIFEST).read_text())
        if manifest.get("complete"):
            raise FileExistsError(f"{out} already holds a complete store; remove it or choose another --out")
        if {k: manifest.get(k) for k in identity} != identity:
            raise ValueError(f"{out} holds an unfinished store of other settings (source, tokenizer or views); "
                             "remove it or choose another --out")
        codes = np.load(out / CODES, mmap_mode="r+")
        labels = np.load(out / LABELS, mmap_mode="r+")
    elif out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not a token store; choose another --out")
    else:
        out.mkdir(parents=True, exist_ok=True)
        manifest = {**identity, "num_items": 0, "cursor": 0, "skipped": [], "complete": False}
        shape = (source.num_items, len(views), tokenizer.num_tokens)
        codes = np.lib.format.open_memmap(out / CODES, mode="w+", dtype=np.uint16, shape=shape)
        labels = np.lib.format.open_memmap(out / LABELS, mode="w+", dtype=np.int32, shape=(source.num_items,))
        _write_manifest(out, manifest)

    device = next(tokenizer.parameters()).device
    bar = progress_bar(total=source.num_items, initial=manifest["cursor"], unit="img", enabled=progress, desc="pretokenize")
    while manifest["cursor"] < source.num_items:
        start = manifest["cursor"]
        stop = min(start + batch_size, source.num_items)
        images, batch_labels, skipped = source.read(start, stop, read_size)
        if skipped and strict:
            warn_skipped(skipped, strict=True)
        if len(images):
            ids = tokenizer.encode(expand(images).flatten(0, 1).to(device)).view(len(images), len(views), -1)
            n = manifest["num_items"]
            codes[n : n + len(images)] = ids.cpu().numpy().astype(np.uint16)
            labels[n : n + len(images)] = batch_labels.numpy()
            codes.flush()
            labels.flush()
        manifest.update(num_items=manifest["num_items"] + len(images), cursor=stop,
                        skipped=manifest["skipped"] + skipped)
        _write_manifest(out, manifest)
        bar.update(stop - start)
    bar.close()
    present = np.bincount(np.asarray(labels[: manifest["num_items"]]), minlength=len(source.class_names))
    empty = [name for name, count in zip(source.class_names, present) if count == 0]
    if empty:  # a store that trains a class it never shows is wrong, not merely poor: leave none behind
        del codes, labels
        for name in (CODES, LABELS, MANIFEST):
            (out / name).unlink(missing_ok=True)
        if not any(out.iterdir()):
            out.rmdir()
        what = "no readable image at all" if len(empty) == len(present) else f"no readable image of class(es) {', '.join(empty[:5])}"
        raise ValueError(f"{source.identity} has {what} ({len(manifest['skipped'])} unreadable file(s)); fix or remove "
                         "them, or drop the empty class folders")
    manifest.update(complete=True, sha256=content_digest(codes[: manifest["num_items"]], labels[: manifest["num_items"]]))
    _write_manifest(out, manifest)
    warn_skipped(manifest["skipped"], strict=False)
    return out


def content_digest(codes: np.ndarray, labels: np.ndarray, rows: int = 4096) -> str:
    """sha256 over the valid rows of codes [n, V, N] and labels [n], read a slice at a time (memory-mapped)."""
    digest = hashlib.sha256()
    for array in (codes, labels):
        for start in range(0, len(array), rows):
            digest.update(np.ascontiguousarray(array[start : start + rows]).tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------ reading
def _open_array(path: Path) -> np.ndarray:
    """A memory-mapped .npy; a missing or truncated file is an error naming it."""
    try:
        return np.load(path, mmap_mode="r")
    except (OSError, ValueError) as error:
        raise ValueError(f"{path} cannot be read ({error}); it may be truncated: run `rear pretokenize` "
                         "again into a fresh folder") from None


class TokenStore:
    """A complete store, memory-mapped: `batch(items, views)` reads only the rows it needs."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if not (self.folder / MANIFEST).is_file():
            raise FileNotFoundError(f"{self.folder} is not a token store (no {MANIFEST}); make one with `rear pretokenize`")
        self.manifest = json.loads((self.folder / MANIFEST).read_text())
        if self.manifest.get("format") != FORMAT or self.manifest.get("version") != VERSION:
            raise ValueError(f"{self.folder / MANIFEST} is not a {FORMAT} v{VERSION} manifest")
        if not self.manifest["complete"]:
            raise ValueError(f"{self.folder} is unfinished; run the same `rear pretokenize` command again to resume it")
        n = self.manifest["num_items"]
        self.codes = _open_array(self.folder / CODES)[:n]  # [items, V, N] uint16
        self.labels = _open_array(self.folder / LABELS)[:n]  # [items] int32
        expected = (n, len(self.manifest["views"]), self.manifest["num_tokens"])
        if self.codes.shape != expected or self.labels.shape != (n,):
            raise ValueError(f"{self.folder}: arrays {self.codes.shape}, {self.labels.shape} do not match the manifest {expected}")

    @staticmethod
    def is_complete(folder: str | Path) -> bool:
        """Whether `folder` holds a finished store."""
        path = Path(folder) / MANIFEST
        return path.is_file() and bool(json.loads(path.read_text()).get("complete"))

    def __len__(self) -> int:
        return self.manifest["num_items"]

    @property
    def num_views(self) -> int:
        return len(self.manifest["views"])

    @property
    def num_classes(self) -> int:
        return self.manifest["num_classes"]

    def batch(self, items: np.ndarray | torch.Tensor, views: np.ndarray | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids [B, N] (int64) and labels [B] of `items` [B] seen through `views` [B]."""
        items, views = np.asarray(items), np.asarray(views)
        order = np.argsort(items, kind="stable")  # sorted reads are kinder to the page cache
        tokens = np.empty((len(items), self.codes.shape[-1]), np.int64)
        tokens[order] = self.codes[items[order], views[order]]
        return torch.from_numpy(tokens), torch.from_numpy(self.labels[items].astype(np.int64))

    @cached_property
    def digest(self) -> str:
        """sha256 of the store's content (recorded when it was finished; computed for older stores)."""
        return self.manifest.get("sha256") or content_digest(self.codes, self.labels)

    def check_tokenizer(self, fingerprint: str) -> None:
        """Refuse a store made by another tokenizer than the one the run names."""
        made_by = self.manifest["tokenizer"]
        if made_by["fingerprint"] != fingerprint:
            raise ValueError(
                f"{self.folder} was made by tokenizer {made_by['path']} ({made_by['fingerprint'][:12]}), "
                f"not by the configured one ({fingerprint[:12]}); pretokenize again with the configured tokenizer"
            )

