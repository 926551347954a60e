"""The RAR-style backbone of the reAR release: adaLN-Zero blocks, learned absolute positions.

Sequence positions: 0 cls, 1 class, 2+i image token t_i. The output at position p >= 1 predicts
t_{p-1}. Shapes: B batch, T positions, N image tokens, D width, H heads, hd head width,
K codebook size, Z code dimension. State-dict names are the official release's, so its
checkpoints load by a key copy (rear.compat).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dataclasses import dataclass

from rear.config import GeneratorConfig
from rear.generator.base import Generator
from rear.generator.cache import KVCache, attend
from rear.generator.dropout import Dropout


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return x * (1 + scale) + shift


class Attention(nn.Module):
    """Multi-head self-attention with per-head QK LayerNorm; causal, or over a KVCache."""

    def __init__(self, config: GeneratorConfig, layer: int) -> None:
        super().__init__()
        self.layer = layer  # index of this layer's slot in a KVCache
        self.heads = config.heads
        self.attn_dropout = config.attn_dropout
        head_dim = config.width // config.heads
        self.qkv = nn.Linear(config.width, 3 * config.width)
        self.q_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.k_norm = nn.LayerNorm(head_dim, eps=1e-6)
        self.proj = nn.Linear(config.width, config.width)
        self.proj_drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, D // self.heads)  # [B, T, 3, H, hd]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, H, T, hd]
        q, k = self.q_norm(q), self.k_norm(k)
        y = attend(q, k, v, cache, self.layer, self.attn_dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, D]
        return self.proj_drop(self.proj(y))


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2, with dropout after each."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        hidden = int(config.width * config.mlp_ratio)
        self.fc1 = nn.Linear(config.width, hidden)
        self.fc2 = nn.Linear(hidden, config.width)
        self.drop = Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(F.gelu(self.fc1(x)))))


class Block(nn.Module):
    """Pre-LN transformer block with adaLN-Zero modulation (DiT)."""

    def __init__(self, config: GeneratorConfig, layer: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(config.width, eps=1e-6)
        self.attn = Attention(config, layer)
        self.norm2 = nn.LayerNorm(config.width, eps=1e-6)
        self.mlp = Mlp(config)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(config.width, 6 * config.width))

    def forward(
        self, x: torch.Tensor, modulation: torch.Tensor, cache: KVCache | None = None
    ) -> torch.Tensor:
        """x [B, T, D], modulation [B, T or 1, 6D] = adaLN_modulation(condition)."""
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(6, -1)
        x = x + gate_msa * self.attn(modulate(self.norm1(x), shift_msa, scale_msa), cache)
        x = x + gate_mlp * self.mlp(modulate(self.norm2(x), shift_mlp, scale_mlp))
        return x


class FinalLayer(nn.Module):
    """Non-affine LayerNorm modulated by (scale, shift) -- the reverse of the blocks' order."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(width, eps=1e-6, elementwise_affine=False)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(width, 2 * width))

    def forward(self, x: torch.Tensor, modulation: torch.Tensor) -> torch.Tensor:
        scale, shift = modulation.chunk(2, -1)
        return modulate(self.norm_final(x), shift, scale)


# Eager decoding precomputes every adaLN output of its distinct labels at every position when the
# table is at most this large (CPU-sized batches); above it (e.g. 100+ ImageNet classes in a batch)
# the modulations are computed step by step.
MODULATION_TABLE_BYTES = 256 * 2**20


@dataclass
class DecodeState:
    """What every decoding step reuses: cache, position table, distinct labels' embeddings."""

    cache: KVCache
    positions: torch.Tensor  # [N+2, D] position + target-aware table
    label_embedding: torch.Tensor  # [U, D]
    rows: torch.Tensor  # [R] row -> index into the U distinct labels
    modulation: torch.Tensor | None = None  # [N+2, U, L*6D + 2D] every adaLN output, when small enough


class RARGenerator(Generator):
    """cls, class, then image tokens; adaLN-Zero conditioning on class + per-position step embedding."""

    prefix_length = 2  # cls, class

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__(config)
        c, D, N = config, config.width, config.num_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.embeddings = nn.Embedding(c.vocab_size, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, N + c.extra_position_rows, D))
        self.target_aware_pos_embed = nn.Parameter(torch.zeros(1, N + c.extra_position_rows, D))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, N + c.extra_step_rows, D))
        self.blocks = nn.ModuleList(Block(c, layer) for layer in range(c.depth))
        self.adaln_before_head = FinalLayer(D)
        self.lm_head = nn.Linear(D, c.codebook_size)
        self.alignment_heads()
        self.reset_parameters()

    # ---------------------------------------------------------------- init
    def reset_parameters(self) -> None:
        """Trunc-normal(0.02) weights and tables, zero biases, zero last adaLN layers (adaLN-Zero)."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.trunc_normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.LayerNorm) and module.elementwise_affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        for table in (self.pos_embed, self.target_aware_pos_embed, self.timesteps_embeddings):
            nn.init.trunc_normal_(table, std=0.02)
        nn.init.zeros_(self.cls_token)
        for modulation in [b.adaLN_modulation for b in self.blocks] + [
            self.adaln_before_head.adaLN_modulation
        ]:
            nn.init.zeros_(modulation[-1].weight)
            nn.init.zeros_(modulation[-1].bias)

    # ---------------------------------------------------------------- forward pieces
    def position_table(self) -> torch.Tensor:
        """[N+2, D]: pos_embed[p] plus the target-aware term (tap[p+1] for 1 <= p <= N, else 0)."""
        N, D = self.config.num_tokens, self.config.width
        zero = self.pos_embed.new_zeros(1, D)
        target = torch.cat([zero, self.target_aware_pos_embed[0, 2 : N + 2], zero])  # [N+2, D]
        return self.pos_embed[0, : N + 2] + target

    def label_embedding(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] (C = null) -> class embeddings [B, D]."""
        return self.embeddings(labels + self.config.codebook_size + 1)

    def embed(
        self, context: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """context [B, n], labels [B] -> inputs x [B, n+2, D], conditions [U, n+2, D] of the U
        distinct labels, and rows [B] naming each sample's condition (see `trunk`)."""
        B, n = context.shape
        if torch.compiler.is_compiling():  # unique's data-dependent size would break the graph (and sync a GPU)
            distinct, rows = labels, torch.arange(B, device=labels.device)  # one condition row per sample
        else:
            distinct, rows = torch.unique(labels, return_inverse=True)  # [U], [B]
        label = self.label_embedding(distinct)  # [U, D]
        x = torch.cat(
            [self.cls_token.expand(B, -1, -1), label[rows, None], self.embeddings(context)], dim=1
        )  # [B, T, D]
        x = x + self.position_table()[: n + 2]
        condition = label[:, None] + self.timesteps_embeddings[:, : n + 2]  # [U, T, D]
        return x, condition, rows

    def trunk(
        self,
        x: torch.Tensor,
        condition: torch.Tensor,
        rows: torch.Tensor,
        cache: KVCache | None = None,
        capture: tuple[int, ...] = (),
        modulations: list[torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run the blocks on x [B, T, D]; return the output and the outputs of blocks in `capture`.

        condition [U, T, D] holds one row per distinct label and rows [B] names each sample's row:
        the adaLN modulations are computed once per distinct label, not once per sample, unless
        `modulations` ([B, T, 6D] per block) are given.
        """
        captured = {}
        for layer, block in enumerate(self.blocks):
            modulation = (block.adaLN_modulation(condition).index_select(0, rows) if modulations is None
                          else modulations[layer])  # [B, T, 6D]
            x = block(x, modulation, cache)
            if layer in capture:
                captured[layer] = x
        return x, captured

    def head(self, x: torch.Tensor, condition: torch.Tensor, rows: torch.Tensor,
             modulation: torch.Tensor | None = None) -> torch.Tensor:
        """Final modulated norm and lm_head: [B, T, D] -> logits [B, T, K] (condition, rows as in `trunk`;
        or the final layer's `modulation` [B, T, 2D])."""
        if modulation is None:
            modulation = self.adaln_before_head.adaLN_modulation(condition).index_select(0, rows)  # [B, T, 2D]
        return self.lm_head(self.adaln_before_head(x, modulation))

    def modulation_table(self, condition: torch.Tensor) -> torch.Tensor:
        """Every block's and the final layer's adaLN output for conditions [..., D] -> [..., L*6D + 2D],
        as one matmul (the same SiLU -> Linear each module computes)."""
        linears = [block.adaLN_modulation[-1] for block in self.blocks] + [self.adaln_before_head.adaLN_modulation[-1]]
        weight = torch.cat([linear.weight for linear in linears])  # [L*6D + 2D, D]
        bias = torch.cat([linear.bias for linear in linears])
        return F.linear(F.silu(condition), weight, bias)

    # ---------------------------------------------------------------- the backbone contract
    def forward_context(
        self, context: torch.Tensor, labels: torch.Tensor, capture: tuple[int, ...] = ()
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """context [B, n], labels [B] -> logits [B, n+1, K] and the captured block outputs [B, n+2, D]."""
        x, condition, rows = self.embed(context, labels)  # [B, n+2, D]
        x, captured = self.trunk(x, condition, rows, capture=capture)
        return self.head(x[:, 1:], condition[:, 1:], rows), captured  # drop cls

    def setup_caches(self, labels: torch.Tensor, static: bool = False) -> DecodeState:
        """Allocate the cache for rows with `labels` [R] and precompute per-call tables (one adaLN
        row per distinct label, or per row where `static` asks for shapes fixed by R alone)."""
        c = self.config
        if static:
            distinct, rows = labels, torch.arange(labels.shape[0], device=labels.device)
        else:
            distinct, rows = torch.unique(labels, return_inverse=True)
        weight = self.embeddings.weight
        cache = KVCache(
            c.depth,
            labels.shape[0],
            c.heads,
            c.num_tokens + 1,  # cls, class, t_0 .. t_{N-2}: t_{N-1} is never read
            c.width // c.heads,
            dtype=weight.dtype,
            device=weight.device,
            zeroed=static,
        )
        state = DecodeState(cache, self.position_table(), self.label_embedding(distinct), rows)
        D, T = c.width, c.num_tokens + 2
        table_bytes = distinct.shape[0] * T * (6 * c.depth + 2) * D * weight.element_size()
        if not static and table_bytes <= MODULATION_TABLE_BYTES:
            condition = self.timesteps_embeddings[0, :T, None] + state.label_embedding  # [T, U, D]
            state.modulation = self.modulation_table(condition)  # [T, U, L*6D + 2D]: a step reads one block
        return state

    def forward_step(self, state: DecodeState, x: torch.Tensor, positions: slice | torch.Tensor,
                     span: int | None = None) -> torch.Tensor:
        """Inputs x [R, T, D] at sequence `positions` (start:stop or [T], attending `span` cache positions)
        -> logits of the last position [R, K]."""
        state.cache.at(positions, span)
        x = x + state.positions[positions]  # [R, T, D]
        condition = state.label_embedding[:, None] + self.timesteps_embeddings[0, positions]  # [U, T, D]
        blocks = final = None  # without a table, trunk and head compute the modulations from `condition`
        if state.modulation is not None:
            chunk = state.modulation[positions]  # [T, U, W] (W = L*6D + 2D), contiguous
            T, U, W = chunk.shape
            index = state.rows[:, None] + U * torch.arange(T, device=x.device)  # [R, T] rows of chunk [T*U, W]
            *blocks, final = F.embedding(index, chunk.view(T * U, W)).split(6 * self.config.width, dim=-1)
            final = final[:, -1:]  # blocks: L x [R, T, 6D]; final: [R, 1, 2D]
        x, _ = self.trunk(x, condition, state.rows, state.cache, modulations=blocks)
        return self.head(x[:, -1:], condition[:, -1:], state.rows, final)[:, 0]  # [R, K]

    def prefill(self, state: DecodeState) -> torch.Tensor:
        """Run cls and class (positions 0, 1); return the logits of t_0 [R, K]."""
        R = state.rows.shape[0]
        label = state.label_embedding[state.rows]  # [R, D]
        x = torch.stack([self.cls_token[0, 0].expand(R, -1), label], dim=1)  # [R, 2, D]
        return self.forward_step(state, x, slice(0, 2))

    def decode_step(self, state: DecodeState, tokens: torch.Tensor, index: int | torch.Tensor,
                    span: int | None = None) -> torch.Tensor:
        """Feed t_index = tokens [R] (at sequence position index + 2); return the logits of t_{index+1}."""
        return self.forward_step(state, self.embeddings(tokens)[:, None], self.step_positions(index), span)
