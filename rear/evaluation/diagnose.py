"""Generator-tokenizer consistency, measured (the paper's two claims).

- re-tokenization consistency: decode sampled tokens, encode the images again, fraction unchanged;
- the tokenizer's ceiling (rear.evaluation.ceiling): what its reconstructions of held-out images keep;
- correct-token ratio (top-1 next-token accuracy) on held-out tokens, clean and corrupted context;
- mean cosine between the decode head's prediction and the target codebook vector, beside what the
  alignment loss could ask beyond cross-entropy (alignment_information).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from rear.config import SampleConfig
from rear.data.store import TokenStore
from rear.generator import Generator
from rear.regularizers import corrupt_context
from rear.tokenizer.base import VQTokenizer


@torch.no_grad()
def retokenization_consistency(model: Generator, tokenizer: VQTokenizer, labels: torch.Tensor,
                               sample: SampleConfig, seed: int = 0) -> float:
    """Fraction of sampled tokens that survive decode -> encode."""
    tokens = model.generate(labels, sample, rng=torch.Generator(labels.device).manual_seed(seed))
    return (tokenizer.encode(tokenizer.decode(tokens)) == tokens).float().mean().item()


@torch.no_grad()
def token_accuracy(model: Generator, tokens: torch.Tensor, labels: torch.Tensor, noise: float,
                   seed: int = 0) -> float:
    """Top-1 next-token accuracy on clean targets, the context corrupted with bound `noise` (switch)."""
    model.eval()
    context, _ = corrupt_context(tokens, noise, model.config.codebook_size,
                                 rng=torch.Generator().manual_seed(seed))
    return (model.logits(context, labels).argmax(-1) == tokens).float().mean().item()


@torch.no_grad()
def decode_cosine(model: Generator, tokens: torch.Tensor, labels: torch.Tensor, codebook: torch.Tensor) -> float:
    """Mean cosine between the decode head's prediction and e(x_i), on a clean context."""
    if model.decode_align_mlp is None:
        raise ValueError("this generator has no decode alignment head (trained without alignment)")
    model.eval()
    layer = model.config.align.decode_layer
    _, captured = model.forward_context(tokens[:, :-1], labels, capture=(layer,))
    prediction = model.decode_align_mlp(model.predicting_states(captured[layer], tokens.shape[1]))  # [B, N, Z]
    return F.cosine_similarity(prediction, F.embedding(tokens, codebook), dim=-1).mean().item()


@torch.no_grad()
def alignment_information(model: Generator, tokens: torch.Tensor, labels: torch.Tensor,
                          codebook: torch.Tensor) -> dict[str, float | None]:
    """Cosines to the next token's code e(x_i) on a clean held-out context [B, N]: of a constant per
    position (the best in hindsight: the easy part of the alignment loss), of the decode head (None
    without one), and of the code direction the generator's own softmax implies (sum_k p_k e_k). When
    the head is no closer than the implied direction, its loss teaches nothing the logits did not."""
    model.eval()
    unit = F.normalize(codebook.float(), dim=-1)  # [K, Z]
    target = unit[tokens]  # [B, N, Z]
    constant = F.normalize(target.mean(0), dim=-1)  # [N, Z]
    implied = F.normalize(model.logits(tokens, labels).float().softmax(-1) @ unit, dim=-1)  # [B, N, Z]
    head = decode_cosine(model, tokens, labels, codebook) if model.decode_align_mlp is not None else None
    return {"constant_cosine": (target * constant).sum(-1).mean().item(), "decode_head_cosine": head,
            "implied_cosine": (target * implied).sum(-1).mean().item(), "code_dim": codebook.shape[1]}


def heldout_tokens(store: TokenStore, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first `count` items of a held-out store, view 0 (as is)."""
    items = np.arange(min(count, len(store)))
    return store.batch(items, np.zeros_like(items))


def balanced_items(labels: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of up to `count` items taken round-robin over the classes in a seeded order:
    class-balanced however the store is sorted."""
    rng = np.random.default_rng(seed)
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in np.unique(labels)]
    picked: list[int] = []
    while len(picked) < count and any(queues):
        picked += [q.pop(0) for q in queues if q][: count - len(picked)]
    return np.sort(np.asarray(picked, dtype=np.int64))
