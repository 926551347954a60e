"""AdamW with the recipe's decay groups, and the warmup + cosine learning rate."""
from __future__ import annotations

import math

import torch
from torch import nn

from rear.config import OptimConfig


def decay_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Decay the weights of Linear layers only; norms, biases, embeddings and tables go undecayed."""
    decayed = {id(m.weight) for m in model.modules() if isinstance(m, nn.Linear)}
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    return torch.optim.AdamW(
        decay_groups(model, config.weight_decay),
        lr=config.learning_rate,
        betas=(config.beta1, config.beta2),
        fused=True,  # one kernel over all tensors, on CPU and CUDA alike
    )


def learning_rate(step: int, total_steps: int, config: OptimConfig) -> float:
    """Linear warmup from 0 to the peak over `warmup_steps`, then cosine to `end_learning_rate`."""
    if step < config.warmup_steps:
        return config.learning_rate * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps)
    cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
    return config.end_learning_rate + (config.learning_rate - config.end_learning_rate) * cosine
