"""Condition Contrastive Alignment (CCA): the guidance-free fine-tune (docs/cca.md).

A step reads each image x of the batch twice, under its label c and under a mismatched label c', in
one doubled batch through the trained model and through the frozen reference (the checkpoint it
started from). With r(x, c) = log p(x | c) - log p_ref(x | c), the image's summed token
log-likelihoods, the loss pushes r up for the true label and down for the wrong one:
    L = (-log sigmoid(beta r(x, c)) - lam log sigmoid(-beta r(x, c'))) / max(lam, 1).
Rows drawn into `uncond_fraction` read the null label in both halves and count as positives in both
(the unconditional model keeps learning the data, so guided sampling still works afterwards).
Shapes: B images, N tokens, K codes.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from rear.config import CCAConfig


def contrast_labels(labels: torch.Tensor, num_classes: int, uncond_fraction: float,
                    rng: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(labels [B] with the unconditional rows set to the null class C, mismatched labels [B], and which
    rows are unconditional [B]). A mismatched label is drawn uniformly from the C - 1 other classes,
    so it never equals the true one (thu-ml/CCA rolls the batch's labels by one, which can repeat a
    label when neighbours share a class)."""
    shift = torch.randint(1, num_classes, labels.shape, generator=rng)  # [B] in 1..C-1
    negatives = (labels + shift) % num_classes
    uncond = torch.rand(labels.shape, generator=rng) < uncond_fraction  # [B]
    null = torch.full_like(labels, num_classes)
    return torch.where(uncond, null, labels), torch.where(uncond, null, negatives), uncond


def cca_loss(r_pos: torch.Tensor, r_neg: torch.Tensor, uncond: torch.Tensor, config: CCAConfig) -> torch.Tensor:
    """The CCA loss of log-likelihood ratios r_pos = r(x, c) [B] and r_neg = r(x, c') [B]; `uncond` [B]
    marks rows whose second half is a positive too (weight 1 instead of lam)."""
    beta, lam = config.beta, config.lam
    positive = -F.logsigmoid(beta * r_pos).mean()
    sign = torch.where(uncond, 1.0, -1.0).to(r_neg.dtype)  # +1: push up (a positive), -1: push down
    weight = torch.where(uncond, 1.0, lam).to(r_neg.dtype)
    negative = -(weight * F.logsigmoid(sign * beta * r_neg)).mean()
    return (positive + negative) / max(lam, 1.0)


def cca_losses(net: torch.nn.Module, reference: torch.nn.Module, tokens: torch.Tensor, labels: torch.Tensor,
               negatives: torch.Tensor, uncond: torch.Tensor, codebook: torch.Tensor, config: CCAConfig,
               align_weight: float) -> Callable[[slice], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(the CCA loss, the alignment loss, CCA + `align_weight` x alignment) of the rows `part` of a batch,
    for rear.train.trainer.accumulate_gradients. Gradients reach `net` only: the reference runs without."""

    def losses(part: slice) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = tokens[part].repeat(2, 1)  # [2b, N]: each image under its label, then under the wrong one
        c = torch.cat([labels[part], negatives[part]])  # [2b]
        vectors = F.embedding(x, codebook)
        with torch.no_grad():
            ref = reference(x, c, vectors, checked=True, sequence_logp=True)["logp"]  # [2b]
        out = net(x, c, vectors, checked=True, sequence_logp=True)
        r_pos, r_neg = (out["logp"] - ref).float().chunk(2)  # [b] each
        loss = cca_loss(r_pos, r_neg, uncond[part], config)
        return loss, out["align"], loss + align_weight * out["align"]

    return losses
