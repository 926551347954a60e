"""The Llama-style backbone of AliTok's AR model: class-token prefix, RMSNorm, QK-norm, SwiGLU, RoPE.

Sequence positions: 0 class token, 1+i image token t_i; the output at position p predicts t_p.
Codes and classes share one embedding table (codes 0..K-1, mask K, class c at K+1+c, null K+C+1).
Rotary angles: none for the class token, 1D (0 .. P-1) over the first P = prefix_tokens tokens,
2D over the square grid of the rest (row P + y on the first half of the rotated pairs, column
P + x on the second). State-dict names are AliTok's, so its checkpoints load by a key copy.
Shapes: B batch, T positions, D width, H heads, hd head width, K codebook size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rear.config import GeneratorConfig
from rear.generator.base import Generator
from rear.generator.cache import KVCache, attend
from rear.generator.dropout import Dropout

NORM_EPS = 1e-5


def rotary_table(config: GeneratorConfig) -> torch.Tensor:
    """(cos, sin) of every position: [1 + N, hd/2, 2]; the class token's rows are zero."""
    head_dim, P, base = config.width // config.heads, config.prefix_tokens, config.rope_base
    pairs = head_dim // 2
    # 1D: pair j turns by t / base^(2j / hd)
    freqs = base ** -(torch.arange(0, head_dim, 2, dtype=torch.float64)[:pairs] / head_dim)  # [hd/2]
    angles_1d = torch.arange(P, dtype=torch.float64)[:, None] * freqs  # [P, hd/2]
    # 2D: each axis gets half of the pairs, frequencies over half the head width
    side = math.isqrt(config.num_tokens - P)
    half = head_dim // 2
    freqs_2d = base ** -(torch.arange(0, half, 2, dtype=torch.float64)[: half // 2] / half)  # [hd/4]
    axis = (P + torch.arange(side, dtype=torch.float64))[:, None] * freqs_2d  # [side, hd/4]
    angles_2d = torch.cat(
        [axis[:, None].expand(-1, side, -1), axis[None].expand(side, -1, -1)], dim=-1
    ).reshape(side * side, pairs)  # [side^2, hd/2] raster: (row, column)
    angles = torch.cat([angles_1d, angles_2d]).float()  # [N, hd/2]
    table = torch.stack([angles.cos(), angles.sin()], dim=-1)  # [N, hd/2, 2]
    # AliTok (after LlamaGen) gives the class position all-zero rows: its query and key vanish
    return torch.cat([table.new_zeros(1, pairs, 2), table])  # [1 + N, hd/2, 2]


def rotate(x: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """Turn adjacent pairs of x [B, H, T, hd] by table [T, hd/2, 2] (in float32)."""
    pairs = x.float().unflatten(-1, (-1, 2))  # [B, H, T, hd/2, 2]
    real, imag = pairs[..., 0], pairs[..., 1]
    cos, sin = table[..., 0], table[..., 1]  # [T, hd/2]
    turned = torch.stack([real * cos - imag * sin, imag * cos + real * sin], dim=-1)
    return turned.flatten(-2).type_as(x)


class Attention(nn.Module):
    """Multi-head causal self-attention with per-head RMSNorm on q and k, then RoPE."""

    def __init__(self, config: GeneratorConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # index of this layer's slot in a KVCache
        self.heads = config.heads
        self.attn_dropout = config.attn_dropout
        head_dim = config.width // config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.q_norm = nn.RMSNorm(head_dim, eps=NORM_EPS)
        self.k_norm = nn.RMSNorm(head_dim, eps=NORM_EPS)
        self.proj = nn.Linear(config.width, config.width)
        self.proj_drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """x [B, T, D], rope [T, hd/2, 2] of these positions."""
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, D // self.heads)  # [B, T, 3, H, hd]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, H, T, hd]
        q, k = rotate(self.q_norm(q), rope), rotate(self.k_norm(k), rope)
        y = attend(q, k, v, cache, self.layer, self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, D]
        return self.proj_drop(self.proj(y))


class FeedForward(nn.Module):
    """SwiGLU: w2(silu(w1 x) * w3 x), dropout on the output."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        hidden = int(2 * config.mlp_ratio * config.width / 3)
        hidden = -(-hidden // config.mlp_multiple) * config.mlp_multiple  # round up
        self.w1 = nn.Linear(config.width, hidden, bias=False)
        self.w3 = nn.Linear(config.width, hidden, bias=False)
        self.w2 = nn.Linear(hidden, config.width, bias=False)
        self.ffn_dropout = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ffn_dropout(self.w2(F.silu(self.w1(x)) * self.w3(x)))


class Block(nn.Module):
    """Pre-norm block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, config: GeneratorConfig, layer: int) -> None:
        super().__init__()
        self.norm1 = nn.RMSNorm(config.width, eps=NORM_EPS)
        self.attn = Attention(config, layer)
        self.norm2 = nn.RMSNorm(config.width, eps=NORM_EPS)
        self.mlp = FeedForward(config)

    def forward(self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, cache)
        return x + self.mlp(self.norm2(x))


@dataclass
class DecodeState:
    """What every decoding step reuses: the cache and the rows' class-token ids."""

    cache: KVCache
    class_ids: torch.Tensor  # [R] embedding rows of the labels


class LlamaGenerator(Generator):
    """Class token, then image tokens; one shared embedding table, untied output layer."""

    prefix_length = 1  # the class token

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        c, D = config, config.width
        self.embeddings = nn.Embedding(c.vocab_size, D)
        self.tok_dropout = Dropout(c.token_dropout)
        self.blocks = nn.ModuleList(Block(c, layer) for layer in range(c.depth))
        self.norm = nn.RMSNorm(D, eps=NORM_EPS)
        self.output = nn.Linear(D, c.codebook_size)
        self.register_buffer("rope", rotary_table(c), persistent=False)  # [1 + N, hd/2, 2]
        self.alignment_heads()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Normal(0.02) Linear and Embedding weights, zero biases, unit norms, a zero output layer."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.RMSNorm):
                nn.init.ones_(module.weight)
        nn.init.zeros_(self.output.weight)
        self.rope = rotary_table(self.config).to(self.rope.device)  # a meta-device build left it empty

    def class_ids(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] (C = null) -> embedding rows [B]."""
        return labels + self.config.codebook_size + 1

    def trunk(
        self, x: torch.Tensor, rope: torch.Tensor, cache: KVCache | None = None, capture: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run the blocks on x [B, T, D]; return the output and the outputs of blocks in `capture`."""
        captured = {}
        for layer, block in enumerate(self.blocks):
            x = block(x, rope, cache)
            if layer in capture:
                captured[layer] = x
        return x, captured

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """[B, T, D] -> logits [B, T, K]."""
        return self.output(self.norm(x))

    # ---------------------------------------------------------------- the backbone contract
    def forward_context(
        self, context: torch.Tensor, labels: torch.Tensor, capture: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """context [B, n], labels [B] -> logits [B, n+1, K] and the captured block outputs [B, n+1, D]."""
        ids = torch.cat([self.class_ids(labels)[:, None], context], dim=1)  # [B, n+1]
        x = self.tok_dropout(self.embeddings(ids))  # [B, n+1, D]
        x, captured = self.trunk(x, self.rope[: ids.shape[1]], capture=capture)
        return self.head(x), captured

    def setup_caches(self, labels: torch.Tensor, static: bool = False) -> DecodeState:
        """Allocate the cache for rows with `labels` [R] (every shape is fixed by R: `static` only keeps the
        cache zeroed for the masked reads of a compiled step)."""
        c, weight = self.config, self.embeddings.weight
        cache = KVCache(
            c.depth,
            labels.shape[0],
            c.heads,
            c.num_tokens,  # class, t_0 .. t_{N-2}: t_{N-1} is never read
            c.width // c.heads,
            dtype=weight.dtype,
            device=weight.device,
            zeroed=static,
        )
        return DecodeState(cache, self.class_ids(labels))

    def forward_step(self, state: DecodeState, ids: torch.Tensor, positions: slice | torch.Tensor,
                     span: int | None = None) -> torch.Tensor:
        """Embedding rows ids [R, T] at sequence `positions` (start:stop or [T], attending `span` cache
        positions) -> logits of the last position [R, K]."""
        state.cache.at(positions, span)
        x, _ = self.trunk(self.embeddings(ids), self.rope[positions], state.cache)  # [R, T, D]
        return self.head(x[:, -1])  # [R, K]

    def prefill(self, state: DecodeState) -> torch.Tensor:
        """Run the class token (position 0); return the logits of t_0 [R, K]."""
        return self.forward_step(state, state.class_ids[:, None], slice(0, 1))

    def decode_step(self, state: DecodeState, tokens: torch.Tensor, index: int | torch.Tensor,
                    span: int | None = None) -> torch.Tensor:
        """Feed t_index = tokens [R] (at sequence position index + 1); return the logits of t_{index+1}."""
        return self.forward_step(state, tokens[:, None], self.step_positions(index), span)
