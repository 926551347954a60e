"""Fashion-MNIST from its IDX files: --data-dir, then $REAR_DATA, then Debian's
`dataset-fashion-mnist`, then a checksum-verified download from the canonical source."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import torch

from rear.download import fetch, sha256

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# SHA-256 of the decompressed IDX files: mirrors (and Debian) re-gzip them, the data is the same
SHA256 = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
URLS = (  # HTTPS first; the canonical S3 website endpoint serves plain HTTP only
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
)
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rear" / "fashion-mnist"
HOW_TO_GET = (
    "get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four "
    f"IDX files ({', '.join(stem + '.gz' for stem in SHA256)}) in a folder and pass --data-dir or set REAR_DATA"
)


def read_idx(path: Path) -> np.ndarray:
    """An IDX array (optionally .gz): uint8 data with the dimensions from its header."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ValueError(f"{path} is not an uint8 IDX file")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def _find(folder: Path, stem: str) -> Path | None:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def download(folder: Path = CACHE_DIR) -> Path:
    """Download the four .gz files into `folder`, verifying the SHA-256 of their contents."""
    for stem, digest in SHA256.items():
        target = folder / f"{stem}.gz"
        if target.is_file() and sha256(target, gzip.open) == digest:
            continue

        def check(path: Path, digest: str = digest) -> str | None:
            try:
                return None if sha256(path, gzip.open) == digest else f"SHA-256 is not {digest[:16]}..."
            except (OSError, EOFError):
                return "not a complete gzip file"

        fetch([url + target.name for url in URLS], target, check)
    return folder


def locate(data_dir: str | Path | None = None, allow_download: bool = True) -> Path:
    """The first folder holding all four IDX files, in the documented order."""
    candidates = [Path(data_dir)] if data_dir else []
    if os.environ.get("REAR_DATA"):
        candidates.append(Path(os.environ["REAR_DATA"]))
    candidates += [DEBIAN_DIR, CACHE_DIR]
    for folder in candidates:
        if all(_find(folder, stem) for pair in FILES.values() for stem in pair):
            return folder
    if data_dir:
        raise FileNotFoundError(f"{data_dir} does not hold the four Fashion-MNIST IDX files; {HOW_TO_GET}")
    if allow_download:
        try:
            return download()
        except OSError as error:
            raise FileNotFoundError(f"Fashion-MNIST not found and the download failed ({error}); {HOW_TO_GET}") from None
    raise FileNotFoundError(f"Fashion-MNIST not found; {HOW_TO_GET}")


def load_fashion_mnist(
    split: str, data_dir: str | Path | None = None, allow_download: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 [n, 28, 28], labels int64 [n]) of split "train" (60k) or "test" (10k)."""
    if split not in FILES:
        raise ValueError(f"unknown split {split!r}; choose train or test")
    folder = locate(data_dir, allow_download)
    images_stem, labels_stem = FILES[split]
    images, labels = read_idx(_find(folder, images_stem)), read_idx(_find(folder, labels_stem))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"{folder}: images {images.shape} and labels {labels.shape} do not pair up")
    return images, labels.astype(np.int64)


def to_tensor(images: np.ndarray, size: int = 32) -> torch.Tensor:
    """uint8 [n, 28, 28] -> float [n, 1, size, size] in [0, 1], zero-padded equally on each side."""
    pad = size - images.shape[-1]
    x = torch.from_numpy(np.array(images)).float().div_(255)[:, None]
    return torch.nn.functional.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2))
