"""Fashion-MNIST from its IDX files: --data-dir, then $REAR_DATA, then Debian's
`dataset-fashion-mnist`, then a checksum-verified download from the canonical source."""
from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MD5 = {  # of the canonical .gz files
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "rear" / "fashion-mnist"
HOW_TO_GET = (
    "get Fashion-MNIST with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or put the four "
    f"IDX files ({', '.join(MD5)}) in a folder and pass --data-dir or set REAR_DATA"
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


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def download(folder: Path = CACHE_DIR) -> Path:
    """Download the four canonical .gz files into `folder`, verifying their MD5 sums."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, md5 in MD5.items():
        target = folder / name
        if target.is_file() and _md5(target) == md5:
            continue
        with tempfile.NamedTemporaryFile(dir=folder, delete=False) as tmp:
            with urllib.request.urlopen(URL + name, timeout=30) as response:
                shutil.copyfileobj(response, tmp)
        if _md5(Path(tmp.name)) != md5:
            os.unlink(tmp.name)
            raise ValueError(f"downloaded {name} does not match its MD5 {md5}")
        os.replace(tmp.name, target)
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
        except (OSError, ValueError) as error:
            raise FileNotFoundError(f"Fashion-MNIST not found and the download failed ({error}); {HOW_TO_GET}") from error
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
