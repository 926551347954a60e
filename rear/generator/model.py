"""The reAR generator: a raster-order, class-conditional causal transformer (RAR architecture).

Sequence positions: 0 cls, 1 class, 2+i image token t_i. The output at position p >= 1 predicts
t_{p-1}. Shapes: B batch, T positions, N image tokens, D width, H heads, hd head width,
K codebook size, Z code dimension. State-dict names are the official release's, so its
checkpoints load by a key copy (rear.compat).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rear.config import GeneratorConfig
from rear.generator.cache import KVCache
from rear.regularizers import alignment_loss, projection_head


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
        self.proj_drop = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        B, T, D = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.heads, D // self.heads)  # [B, T, 3, H, hd]
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # 3 x [B, H, T, hd]
        q, k = self.q_norm(q), self.k_norm(k)
        if cache is None:
            dropout = self.attn_dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            k, v = cache.update(self.layer, k, v)  # 2 x [B, H, T_cache, hd]
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=cache.mask)
        y = y.transpose(1, 2).reshape(B, T, D)  # [B, T, D]
        return self.proj_drop(self.proj(y))


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2, with dropout after each."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        hidden = int(config.width * config.mlp_ratio)
        self.fc1 = nn.Linear(config.width, hidden)
        self.fc2 = nn.Linear(hidden, config.width)
        self.drop = nn.Dropout(config.dropout)

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


class Generator(nn.Module):
    """Class-conditional next-token transformer over raster VQ tokens, with reAR training heads."""

    def __init__(self, config: GeneratorConfig) -> None:
        super().__init__()
        self.config = config.validate()
        c, D, N = config, config.width, config.num_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.embeddings = nn.Embedding(c.vocab_size, D)
        self.pos_embed = nn.Parameter(torch.zeros(1, N + c.extra_position_rows, D))
        self.target_aware_pos_embed = nn.Parameter(torch.zeros(1, N + c.extra_position_rows, D))
        self.timesteps_embeddings = nn.Parameter(torch.zeros(1, N + c.extra_step_rows, D))
        self.blocks = nn.ModuleList(Block(c, layer) for layer in range(c.depth))
        self.adaln_before_head = FinalLayer(D)
        self.lm_head = nn.Linear(D, c.codebook_size)
        a = c.align
        self.encode_align_mlp = projection_head(D, a.projection_dim, a.code_dim) if a.encode else None
        self.decode_align_mlp = projection_head(D, a.projection_dim, a.code_dim) if a.decode else None
        self.reset_parameters()

    # ---------------------------------------------------------------- init and ids
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

    @property
    def mask_id(self) -> int:
        """Token id of the mask token (the "mask" corruption mode)."""
        return self.config.codebook_size

    @property
    def null_label(self) -> int:
        """Label value meaning "no class" (classifier-free guidance, label dropout)."""
        return self.config.num_classes

    def num_parameters(self, heads: bool = False) -> int:
        """Parameter count, without the training-only alignment heads unless `heads`."""
        return sum(
            p.numel() for n, p in self.named_parameters() if heads or "_align_mlp." not in n
        )

    def check_inputs(self, labels: torch.Tensor, tokens: torch.Tensor | None = None) -> None:
        """Raise ValueError on labels outside [0, C] or tokens [B, n] outside [0, K] / n > N."""
        c = self.config
        if labels.dim() != 1 or labels.dtype.is_floating_point:
            raise ValueError(f"labels must be an integer tensor [B], got {labels.dtype} {tuple(labels.shape)}")
        if labels.numel() and (labels.min() < 0 or labels.max() > c.num_classes):
            raise ValueError(
                f"labels must lie in [0, {c.num_classes}] ({c.num_classes} = null class), "
                f"got range [{labels.min().item()}, {labels.max().item()}]"
            )
        if tokens is None:
            return
        if tokens.dim() != 2 or tokens.dtype.is_floating_point or tokens.shape[0] != labels.shape[0]:
            raise ValueError(
                f"tokens must be an integer tensor [B={labels.shape[0]}, n], got {tokens.dtype} {tuple(tokens.shape)}"
            )
        if tokens.shape[1] > c.num_tokens:
            raise ValueError(f"got {tokens.shape[1]} tokens per image; this model takes {c.num_tokens}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() > self.mask_id):
            raise ValueError(
                f"token ids must lie in [0, {c.codebook_size - 1}] (or {self.mask_id} = mask), "
                f"got range [{tokens.min().item()}, {tokens.max().item()}]; "
                "was the data tokenized with a tokenizer of another codebook size?"
            )

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
    ) -> tuple[torch.Tensor, dict[int, torch.Tensor]]:
        """Run the blocks on x [B, T, D]; return the output and the outputs of blocks in `capture`.

        condition [U, T, D] holds one row per distinct label and rows [B] names each sample's row:
        the adaLN modulations are computed once per distinct label, not once per sample.
        """
        captured = {}
        for layer, block in enumerate(self.blocks):
            x = block(x, block.adaLN_modulation(condition)[rows], cache)  # modulation [B, T, 6D]
            if layer in capture:
                captured[layer] = x
        return x, captured

    def head(self, x: torch.Tensor, condition: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Final modulated norm and lm_head: [B, T, D] -> logits [B, T, K] (condition, rows as in `trunk`)."""
        modulation = self.adaln_before_head.adaLN_modulation(condition)[rows]  # [B, T, 2D]
        return self.lm_head(self.adaln_before_head(x, modulation))

    # ---------------------------------------------------------------- public API
    def logits(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Teacher-forced next-token logits [B, N, K]: row i predicts tokens[:, i]."""
        self.check_inputs(labels, tokens)
        x, condition, rows = self.embed(tokens[:, :-1], labels)  # [B, N+1, D]
        x, _ = self.trunk(x, condition, rows)
        return self.head(x[:, 1:], condition[:, 1:], rows)  # drop cls

    def training_losses(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        code_vectors: torch.Tensor,
        context: torch.Tensor | None = None,
        corrupted: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The reAR loss {"ce", "align", "total"} of clean `tokens` [B, N] read through `context`.

        code_vectors [B, N, Z] are the frozen codebook vectors of the clean tokens; `corrupted` [B, N]
        marks the context positions the noise drew (their encode-alignment term is zeroed), including
        a switch that drew the true code; without it, positions where context != tokens count.
        """
        c = self.config
        context = tokens if context is None else context
        corrupted = context != tokens if corrupted is None else corrupted  # [B, N]
        self.check_inputs(labels, context)
        self.check_inputs(labels, tokens)
        if tokens.shape[1] != c.num_tokens or context.shape != tokens.shape or corrupted.shape != tokens.shape:
            raise ValueError(
                f"tokens, context and corrupted must all be [B, {c.num_tokens}], "
                f"got {tuple(tokens.shape)}, {tuple(context.shape)} and {tuple(corrupted.shape)}"
            )
        if tokens.numel() and tokens.max() >= c.codebook_size:
            raise ValueError(f"target tokens must lie in [0, {c.codebook_size - 1}], got {tokens.max().item()} "
                             f"({c.codebook_size} is the mask id: only a context may hold it)")
        x, condition, rows = self.embed(context, labels)  # [B, N+2, D], [U, N+2, D], [B]
        layers = (c.align.encode_layer, c.align.decode_layer) if c.align.enabled else ()
        x, captured = self.trunk(x, condition, rows, capture=layers)
        logits = self.head(x[:, 1:-1], condition[:, 1:-1], rows)  # [B, N, K]
        ce = F.cross_entropy(logits.flatten(0, 1).float(), tokens.flatten())
        if not c.align.enabled:
            align = ce.new_zeros(())
        else:
            if code_vectors.shape != (*tokens.shape, c.align.code_dim):
                raise ValueError(
                    f"code_vectors must be [B, N, Z={c.align.code_dim}], got {tuple(code_vectors.shape)}"
                )
            encode = decode = None
            if self.encode_align_mlp is not None:  # state at the position holding t_i
                # corrupted positions carry no encode term: run the head on the clean ones only
                hidden = captured[c.align.encode_layer][:, 2:]  # [B, N, D]
                clean = ~corrupted
                encode = hidden.new_zeros(*tokens.shape, c.align.code_dim)  # [B, N, Z]
                encode = encode.index_put((clean,), self.encode_align_mlp(hidden[clean]).to(encode.dtype))
            if self.decode_align_mlp is not None:  # state at the position predicting t_i
                decode = self.decode_align_mlp(captured[c.align.decode_layer][:, 1:-1])
            align = alignment_loss(encode, decode, code_vectors, corrupted)
        return {"ce": ce, "align": align, "total": ce + c.align.weight * align}

    def forward(
        self,
        tokens: torch.Tensor,
        labels: torch.Tensor,
        code_vectors: torch.Tensor,
        context: torch.Tensor | None = None,
        corrupted: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """The training losses: the step DistributedDataParallel wraps."""
        return self.training_losses(tokens, labels, code_vectors, context, corrupted)

    @torch.no_grad()
    def generate(
        self,
        labels: torch.Tensor,
        *,
        cfg_scale: float,
        cfg_power: float,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Sample token grids [B, N] for `labels` [B] with the power-cosine CFG schedule."""
        from rear.generator.sampling import generate

        return generate(
            self,
            labels,
            cfg_scale=cfg_scale,
            cfg_power=cfg_power,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            generator=generator,
        )
