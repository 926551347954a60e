"""Fast sampling on a static KV cache: prefill, decode one token, decode n (gpt-fast style).

Per step only the new token is embedded and run through the blocks; the cache is written in place.
Rows of a CFG batch share few distinct labels, so the adaLN modulations (a third of the FLOPs at
small widths) are computed once per distinct label and gathered. Shapes: B images, R rows (2B with
CFG), U distinct labels, D width, K codebook size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from rear.generator.cache import KVCache
from rear.generator.model import Generator


def cfg_schedule(step: int, num_steps: int, cfg_scale: float, cfg_power: float) -> float:
    """Guidance at `step`: (g - 1) * (1 - cos(pi * (step / N) ** pow)) / 2 + 1."""
    s = (1 - math.cos(math.pi * (step / num_steps) ** cfg_power)) / 2
    return (cfg_scale - 1) * s + 1


def filter_logits(
    logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None
) -> torch.Tensor:
    """Set logits [B, K] outside the top-k and outside the top-p nucleus to -inf."""
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]), dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if top_p is not None:
        ordered, order = logits.sort(dim=-1, descending=True)  # [B, K]
        probs = ordered.softmax(-1)
        outside = probs.cumsum(-1) - probs >= top_p  # the tokens before already hold mass p
        ordered = ordered.masked_fill(outside, -math.inf)
        logits = torch.full_like(logits, -math.inf).scatter(-1, order, ordered)
    return logits


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from logits [B, K] -> [B]."""
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]


@dataclass
class DecodeState:
    """What every decoding step reuses: cache, position table, distinct labels' embeddings."""

    cache: KVCache
    positions: torch.Tensor  # [N+2, D] position + target-aware table
    label_embedding: torch.Tensor  # [U, D]
    rows: torch.Tensor  # [R] row -> index into the U distinct labels


def start(model: Generator, labels: torch.Tensor) -> DecodeState:
    """Allocate the cache for rows with `labels` [R] and precompute per-call tables."""
    c = model.config
    distinct, rows = torch.unique(labels, return_inverse=True)
    weight = model.embeddings.weight
    cache = KVCache(
        c.depth,
        labels.shape[0],
        c.heads,
        c.num_tokens + 1,  # cls, class, t_0 .. t_{N-2}: t_{N-1} is never read
        c.width // c.heads,
        dtype=weight.dtype,
        device=weight.device,
    )
    return DecodeState(cache, model.position_table(), model.label_embedding(distinct), rows)


def forward_step(
    model: Generator, state: DecodeState, x: torch.Tensor, positions: torch.Tensor
) -> torch.Tensor:
    """Inputs x [R, T, D] at sequence `positions` [T] -> logits of the last position [R, K]."""
    state.cache.at(positions)
    x = x + state.positions[positions]  # [R, T, D]
    condition = state.label_embedding[:, None] + model.timesteps_embeddings[0, positions]  # [U, T, D]
    x, _ = model.trunk(x, condition, state.rows, state.cache)
    return model.head(x[:, -1:], condition[:, -1:], state.rows)[:, 0]  # [R, K]


def prefill(model: Generator, state: DecodeState) -> torch.Tensor:
    """Run cls and class (positions 0, 1); return the logits of t_0 [R, K]."""
    R = state.rows.shape[0]
    label = state.label_embedding[state.rows]  # [R, D]
    x = torch.stack([model.cls_token[0, 0].expand(R, -1), label], dim=1)  # [R, 2, D]
    return forward_step(model, state, x, torch.arange(2, device=x.device))


def decode_one(
    model: Generator, state: DecodeState, tokens: torch.Tensor, position: torch.Tensor
) -> torch.Tensor:
    """Feed tokens [R] at sequence `position` [1]; return the logits of the next token [R, K]."""
    return forward_step(model, state, model.embeddings(tokens)[:, None], position)


def generate(
    model: Generator,
    labels: torch.Tensor,
    *,
    cfg_scale: float,
    cfg_power: float,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    decode: Callable = decode_one,
) -> torch.Tensor:
    """Sample [B, N] tokens for `labels` [B]; cfg_scale 1 samples conditionally on one batch.

    `decode` may be a compiled `decode_one` (torch.compile), as gpt-fast does on GPUs.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0 < top_p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {top_p}")
    model.check_inputs(labels)
    B, N = labels.shape[0], model.config.num_tokens
    guided = cfg_scale != 1
    rows = torch.cat([labels, torch.full_like(labels, model.null_label)]) if guided else labels
    was_training = model.training
    model.eval()
    with torch.no_grad():
        state = start(model, rows)
        logits = prefill(model, state)  # [R, K]
        tokens = labels.new_empty(B, N)
        for step in range(N):
            if guided:
                cond, uncond = logits.float().chunk(2)
                scale = cfg_schedule(step, N, cfg_scale, cfg_power)
                logits = uncond + (cond - uncond) * scale  # [B, K]
            tokens[:, step] = sample_tokens(logits, temperature, top_k, top_p, generator)
            if step < N - 1:
                fed = tokens[:, step].repeat(2) if guided else tokens[:, step]
                position = torch.tensor([step + 2], device=labels.device)
                logits = decode(model, state, fed, position)
    model.train(was_training)
    return tokens


def generate_recompute(
    model: Generator,
    labels: torch.Tensor,
    *,
    cfg_scale: float,
    cfg_power: float,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Reference sampler without a cache: re-runs the whole prefix at every step (slow, simple)."""
    model.check_inputs(labels)
    B, N = labels.shape[0], model.config.num_tokens
    guided = cfg_scale != 1
    row_labels = torch.cat([labels, torch.full_like(labels, model.null_label)]) if guided else labels
    tokens = labels.new_empty(B, 0)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for step in range(N):
            context = tokens.repeat(2, 1) if guided else tokens  # [R, step]
            x, condition, rows = model.embed(context, row_labels)
            x, _ = model.trunk(x, condition, rows)
            logits = model.head(x[:, -1:], condition[:, -1:], rows)[:, 0]  # [R, K]
            if guided:
                cond, uncond = logits.float().chunk(2)
                logits = uncond + (cond - uncond) * cfg_schedule(step, N, cfg_scale, cfg_power)
            sampled = sample_tokens(logits, temperature, top_k, top_p, generator)
            tokens = torch.cat([tokens, sampled[:, None]], dim=1)
    model.train(was_training)
    return tokens
