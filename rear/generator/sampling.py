"""Fast sampling on a static KV cache: prefill, decode one token, decode n (gpt-fast style).

Per step only the new token is embedded and run through the blocks; the cache is written in place.
The loop is the same for every backbone: it calls the model's `setup_caches`, `prefill` and `decode_step`
(rear.generator.base). Shapes: B images, R rows (2B with CFG), N tokens, K codebook size.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, Optional

import torch

from rear.config import SampleConfig
from rear.generator.base import Generator
from rear.generator.cache import span_for


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
    rng: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw one token per row from logits [B, K] -> [B], by the inverse CDF: one uniform per row (torch.multinomial
    draws K exponentials per row: 3.71 against 0.38 ms at [250, 512] on one CPU thread, benchmarks/bench_draw.py).
    A row whose logits are not finite draws K, out of range: `generate` refuses it once, at the end."""
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)  # [B, K]
    cdf = probs.cumsum(-1)  # [B, K]
    total = cdf[:, -1:]  # [B, 1]: 1 up to rounding
    u = torch.rand(total.shape, generator=rng, device=total.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))  # below the total: a zero tail never drawn
    return torch.searchsorted(cdf, u, right=True)[:, 0]  # the first token whose CDF exceeds u


def decode_one(model: Generator, state: Any, tokens: torch.Tensor, index: int | torch.Tensor,
               span: int | None = None) -> torch.Tensor:
    """Feed t_index = tokens [R] (index: an int, or a tensor [1] with the attended `span` when compiled);
    return the logits of the next token [R, K]."""
    return model.decode_step(state, tokens, index, span)


@functools.cache
def compiled_decode_one(device_type: str) -> Callable:
    """`decode_one` under torch.compile, whole-graph, one graph per span (static: an int is never made
    symbolic); on a GPU with CUDA graphs (gpt-fast's reduce-overhead), which replay one step's kernels in
    one launch."""
    mode = "reduce-overhead" if device_type == "cuda" else "default"
    return torch.compile(decode_one, mode=mode, fullgraph=True, dynamic=False)


def compile_pays(device: torch.device | str) -> bool:
    """Whether `generate(compiled=True)` is the faster default here: on a GPU (graph replay removes
    the launch overhead of hundreds of small kernels per token), not on a CPU, where
    benchmarks/bench_sampling.py measures the compiled step slower than eager."""
    return torch.device(device).type == "cuda"


def generate(
    model: Generator,
    labels: torch.Tensor,
    sample: SampleConfig,
    *,
    rng: torch.Generator | None = None,
    compiled: bool = False,
    on_token: Optional[Callable[[int, torch.Tensor], None]] = None,
) -> torch.Tensor:
    """Sample [B, N] tokens for `labels` [B] with the settings `sample`; cfg_scale 1 samples
    conditionally on one batch. Called through `Generator.generate`, the one front door.

    `compiled` runs the one-token step through `compiled_decode_one` (static shapes: the whole cache
    under a mask); eager steps read only the filled prefix. Both draw the same tokens.
    `on_token(n, tokens)` is called after each step with the n tokens drawn so far ([B, n], a view):
    a viewer can decode the partial raster while the rest is sampled.
    """
    sample.validate()  # the one check of every path
    cfg_scale, cfg_power, temperature, top_k, top_p = (sample.cfg_scale, sample.cfg_power, sample.temperature,
                                                       sample.top_k, sample.top_p)
    model.check_inputs(labels)
    B, N = labels.shape[0], model.config.num_tokens
    guided = cfg_scale != 1
    rows = torch.cat([labels, torch.full_like(labels, model.null_label)]) if guided else labels
    was_training = model.training
    model.eval()
    with torch.no_grad():
        state = model.setup_caches(rows, static=compiled)
        logits = model.prefill(state)  # [R, K]
        decode = compiled_decode_one(labels.device.type) if compiled else decode_one
        tokens = labels.new_empty(B, N)
        for step in range(N):
            if guided:
                cond, uncond = logits.float().chunk(2)
                scale = cfg_schedule(step, N, cfg_scale, cfg_power)
                logits = uncond + (cond - uncond) * scale  # [B, K]
            tokens[:, step] = sample_tokens(logits, temperature, top_k, top_p, rng)
            if on_token is not None:
                on_token(step + 1, tokens[:, : step + 1])
            if step < N - 1:
                fed = tokens[:, step].repeat(2) if guided else tokens[:, step]
                if compiled:  # t_step sits at position step + prefix_length: the span that covers it
                    index = torch.tensor([step], device=labels.device)
                    logits = decode(model, state, fed, index, span_for(step + model.prefix_length, state.cache.length))
                else:
                    logits = decode(model, state, fed, step)
    model.train(was_training)
    check_drawn(tokens, model.config.codebook_size)
    return tokens


def check_drawn(tokens: torch.Tensor, codes: int) -> None:
    """One read per call, after the loop: every drawn token is a code (sample_tokens draws K from non-finite logits)."""
    if int(tokens.max()) >= codes:
        raise FloatingPointError("the model's logits were not finite (NaN or inf) at some step, so no token could be "
                                 "drawn there: check the checkpoint's weights, or sample in float32 instead of bf16")


def generate_recompute(
    model: Generator, labels: torch.Tensor, sample: SampleConfig, *, rng: torch.Generator | None = None
) -> torch.Tensor:
    """Reference sampler without a cache: re-runs the whole prefix at every step (slow, simple)."""
    sample.validate()
    cfg_scale, cfg_power, temperature, top_k, top_p = (sample.cfg_scale, sample.cfg_power, sample.temperature,
                                                       sample.top_k, sample.top_p)
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
            logits = model.forward_context(context, row_labels)[0][:, -1]  # [R, K]
            if guided:
                cond, uncond = logits.float().chunk(2)
                logits = uncond + (cond - uncond) * cfg_schedule(step, N, cfg_scale, cfg_power)
            sampled = sample_tokens(logits, temperature, top_k, top_p, rng)
            tokens = torch.cat([tokens, sampled[:, None]], dim=1)
    model.train(was_training)
    check_drawn(tokens, model.config.codebook_size)
    return tokens
