"""Run a feature extractor over many images in batches: the loop InceptionV3 and the domain classifier share."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


@torch.no_grad()
def embed_batches(
    extract: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    images: torch.Tensor,
    batch_size: int,
    device: torch.device,
) -> dict[str, np.ndarray]:
    """images [n, C, H, W] -> each output of `extract` over all images, concatenated as float64 [n, ...]."""
    out: dict[str, list[torch.Tensor]] = {}
    for start in range(0, len(images), batch_size):
        for key, value in extract(images[start : start + batch_size].to(device)).items():
            out.setdefault(key, []).append(value.cpu())
    return {key: torch.cat(values).double().numpy() for key, values in out.items()}
