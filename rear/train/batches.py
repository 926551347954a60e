"""Deterministic batches: the global batch of step s is a pure function of (seed, s).

Every rank draws the same global batch (order, views, corruption, label dropout) and keeps its own
slice, so N ranks with batch b train exactly like one process with batch N*b, and a resumed run
continues the same stream.
"""
from __future__ import annotations

from functools import lru_cache

import torch

from rear.config import Corruption, NoiseConfig
from rear.data.store import TokenStore
from rear.regularizers import corrupt_context, noise_ratio


@lru_cache(maxsize=2)
def _epoch_order(num_items: int, num_views: int, seed: int, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    return torch.randperm(num_items, generator=g), torch.randint(0, num_views, (num_items,), generator=g)


def global_batch(store: TokenStore, step: int, batch_size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean tokens [B, N] and labels [B] of optimizer step `step` (epochs drop their last partial batch)."""
    per_epoch = len(store) // batch_size
    if per_epoch == 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(store)} items of {store.folder}")
    epoch, offset = divmod(step, per_epoch)
    order, views = _epoch_order(len(store), store.num_views, seed, epoch)
    items = order[offset * batch_size : (offset + 1) * batch_size]
    return store.batch(items.numpy(), views[items].numpy())


def regularize(
    tokens: torch.Tensor,
    labels: torch.Tensor,
    step: int,
    seed: int,
    noise: NoiseConfig,
    label_dropout: float,
    codebook_size: int,
    null_label: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """The context the model reads [B, N], which of its positions the noise drew [B, N], the labels
    after dropout [B], and the noise bound r of this step."""
    g = torch.Generator().manual_seed(seed * 100_003 + step + 7)
    ratio = noise_ratio(step, noise.anneal_start, noise.anneal_end) if noise.enabled else 0.0
    mask_id = codebook_size if noise.corruption is Corruption.MASK else None
    context, corrupted = corrupt_context(tokens, ratio, codebook_size, mask_id, rng=g)
    dropped = torch.rand(labels.shape, generator=g) < label_dropout
    return context, corrupted, torch.where(dropped, torch.full_like(labels, null_label), labels), ratio
