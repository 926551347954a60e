"""Static key/value cache: allocated once per sampling call, written at explicit positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


class KVCache:
    """Keys and values of every layer for T positions; the sampler owns it and passes it in.

    k, v: [L, B, H, T, hd]. `positions` are the sequence positions written by the current call.
    """

    def __init__(
        self,
        depth: int,
        batch: int,
        heads: int,
        length: int,
        head_dim: int,
        *,
        dtype: torch.dtype,
        device: torch.device | str,
    ) -> None:
        shape = (depth, batch, heads, length, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        # fixed addresses let a compiled decode step (CUDA graphs) update the buffers in place
        torch._dynamo.mark_static_address(self.k)
        torch._dynamo.mark_static_address(self.v)
        # allowed[q, t]: query at position q may attend to key position t (t <= q)
        self.allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        self.mask: torch.Tensor | None = None  # [T_new, T] rows of `allowed`, set per call
        self.positions: torch.Tensor | None = None

    @property
    def length(self) -> int:
        return self.k.shape[3]

    def at(self, positions: torch.Tensor) -> None:
        """Point the next forward pass at sequence `positions` [T_new] (int64)."""
        self.positions = positions
        self.mask = self.allowed[positions]  # [T_new, T]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H, T_new, hd] at the current positions; return the whole [B, H, T, hd]."""
        self.k[layer].index_copy_(2, self.positions, k)
        self.v[layer].index_copy_(2, self.positions, v)
        return self.k[layer], self.v[layer]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: "KVCache | None", layer: int,
           dropout: float) -> torch.Tensor:
    """Causal attention of q, k, v [B, H, T, hd] -> [B, H, T, hd]; with a cache, k and v are written at
    its positions first and every cached key the mask allows is attended (dropout only without one)."""
    if cache is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    k, v = cache.update(layer, k, v)  # 2 x [B, H, T_cache, hd]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask)
