"""The two reAR regularizers, independent of any particular transformer.

noisy context:  `noise_ratio` (the annealed bound r) and `corrupt_context` (what the model reads).
alignment:      `projection_head` (the small MLPs) and `alignment_loss` (cosine to codebook vectors).

Shapes: B batch, N image tokens, D model width, P projection width, Z codebook dimension.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def noise_ratio(step: int, start: int, end: int) -> float:
    """Upper bound r of the per-sample corruption rate: 1 before `start`, linear to 0 at `end`."""
    if step <= start:
        return 1.0
    if step >= end:
        return 0.0
    return 1.0 - (step - start) / (end - start)


def corrupt_context(
    tokens: torch.Tensor,
    ratio: float,
    codebook_size: int,
    mask_id: int | None = None,
    rng: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Corrupt image tokens [B, N]: each sample draws rho ~ U(0, ratio), each position flips w.p. rho.

    A flipped position becomes a uniform random code ("switch"; it may equal the original and still
    counts as corrupted) or `mask_id` when given ("mask"). Returns (context [B, N], corrupted [B, N]).
    """
    B, N = tokens.shape
    rho = torch.rand(B, 1, device=tokens.device, generator=rng) * ratio  # [B, 1]
    corrupted = torch.rand(B, N, device=tokens.device, generator=rng) < rho  # [B, N]
    if mask_id is None:
        replacement = torch.randint(
            0, codebook_size, (B, N), device=tokens.device, generator=rng
        )
    else:
        replacement = torch.full_like(tokens, mask_id)
    return torch.where(corrupted, replacement, tokens), corrupted


def projection_head(width: int, projection_dim: int, code_dim: int) -> nn.Sequential:
    """Linear(D,P) -> SiLU -> Linear(P,P) -> SiLU -> Linear(P,Z); indices 0, 2, 4 hold weights."""
    return nn.Sequential(
        nn.Linear(width, projection_dim),
        nn.SiLU(),
        nn.Linear(projection_dim, projection_dim),
        nn.SiLU(),
        nn.Linear(projection_dim, code_dim),
    )


def alignment_loss(
    encode_pred: torch.Tensor | None,
    decode_pred: torch.Tensor | None,
    code_vectors: torch.Tensor,
    corrupted: torch.Tensor | None = None,
) -> torch.Tensor:
    """Negative cosine to the clean tokens' codebook vectors, summed over the two heads.

    encode_pred [B, N, Z]: from the positions holding input token i (aligned to e(x_i)); the terms
        of corrupted inputs are zeroed but still count in the mean.
    decode_pred [B, N, Z]: from the positions whose logits predict token i (aligned to e(x_i)).
    code_vectors [B, N, Z]: frozen codebook vectors of the clean tokens.
    """
    target = F.normalize(code_vectors.float(), dim=-1)  # [B, N, Z]
    loss = target.new_zeros(())
    if encode_pred is not None:
        cosine = (F.normalize(encode_pred.float(), dim=-1) * target).sum(-1)  # [B, N]
        if corrupted is not None:
            cosine = cosine * (~corrupted).to(cosine.dtype)
        loss = loss - cosine.mean()
    if decode_pred is not None:
        cosine = (F.normalize(decode_pred.float(), dim=-1) * target).sum(-1)  # [B, N]
        loss = loss - cosine.mean()
    return loss
