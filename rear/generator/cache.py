"""Static key/value cache: allocated once per sampling call, written at explicit positions."""
from __future__ import annotations

import torch
import torch.nn.functional as F


SPANS = 4  # fixed attention lengths of a compiled decode step (one graph each)


def span_for(position: int, length: int) -> int:
    """The fixed span of a cache of `length` positions that covers `position`: a multiple of ceil(length / SPANS)."""
    chunk = -(-length // SPANS)
    return min(length, (position // chunk + 1) * chunk)


class KVCache:
    """Keys and values of every layer for T positions; the sampler owns it and passes it in.

    k, v: one [B, H, T, hd] tensor per layer (separate tensors, so that a compiled step updates each
    in place instead of copying one shared buffer). A forward pass writes the positions named by
    `at`: a slice (eager decoding: write there, attend only the filled prefix) or an int64 tensor (a
    compiled step with static shapes: write by index, attend the first `span` positions under a mask; gpt-fast
    attends the whole cache, whose reading is most of a CPU decode step: `span` takes one of SPANS fixed
    lengths, so a compiled sampler holds SPANS graphs and reads on average about 5/8 of the cache).
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
        zeroed: bool = True,
    ) -> None:
        """`zeroed` False leaves the memory uninitialised: only for eager steps, which never read a
        position before writing it (a masked read of garbage could still meet NaN * 0)."""
        shape = (batch, heads, length, head_dim)
        new = torch.zeros if zeroed else torch.empty
        self.k = [new(shape, dtype=dtype, device=device) for _ in range(depth)]
        self.v = [new(shape, dtype=dtype, device=device) for _ in range(depth)]
        for buffer in self.k + self.v:  # fixed addresses: CUDA graphs update them in place
            torch._dynamo.mark_static_address(buffer)
        # allowed[q, t]: query at position q may attend to key position t (t <= q)
        self.allowed = torch.ones(length, length, dtype=torch.bool, device=device).tril()
        self.positions: slice | torch.Tensor | None = None
        self.span = length  # with tensor positions: attend cache positions [0, span)
        self.mask: torch.Tensor | None = None  # [T_new, T_read] where the new queries need one
        self.causal = False  # the new positions start at 0: SDPA's own causal mask applies

    @property
    def length(self) -> int:
        return self.k[0].shape[2]

    def at(self, positions: slice | torch.Tensor, span: int | None = None) -> None:
        """Point the next forward pass at sequence `positions`: start:stop, or an int64 tensor [T_new] with the
        `span` of cache positions to attend (a plain int: a compiled step specializes on it; None: all)."""
        self.positions = positions
        if isinstance(positions, torch.Tensor):
            self.span = self.length if span is None else span
            self.mask, self.causal = self.allowed[positions, : self.span], False  # [T_new, span]
            return
        start, stop = positions.start, positions.stop
        # one query sees every filled key; a block from 0 is plain causal; else rows of `allowed`
        self.causal = start == 0 and stop > 1
        self.mask = None if stop - start == 1 or self.causal else self.allowed[start:stop, :stop]

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, H, T_new, hd] at the current positions; return the keys and values to attend:
        the filled prefix [B, H, stop, hd] after a slice, the first span [B, H, span, hd] after a tensor."""
        if isinstance(self.positions, torch.Tensor):
            self.k[layer].index_copy_(2, self.positions, k)
            self.v[layer].index_copy_(2, self.positions, v)
            return self.k[layer][:, :, : self.span], self.v[layer][:, :, : self.span]
        self.k[layer][:, :, self.positions] = k
        self.v[layer][:, :, self.positions] = v
        stop = self.positions.stop
        return self.k[layer][:, :, :stop], self.v[layer][:, :, :stop]


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cache: "KVCache | None", layer: int,
           dropout: float) -> torch.Tensor:
    """Causal attention of q, k, v [B, H, T, hd] -> [B, H, T, hd]; with a cache, k and v are written at
    its positions first and every cached key the mask allows is attended (dropout only without one)."""
    if cache is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
    k, v = cache.update(layer, k, v)  # 2 x [B, H, T_read, hd]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask, is_causal=cache.causal)
