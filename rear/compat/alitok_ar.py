"""Load AliTok's released AR generators (github ali-vilab/alitok, weights/alitok_{b,l,xl}.bin).

The release saves a plain state dict of its `ARModel`; our Llama backbone uses its names, so loading
is a key copy. Sizes are read off the tensors: width and vocabulary from `embeddings.weight`, depth
from the block count, head width from `q_norm.weight`, codes from `output.weight`; the SwiGLU width follows from the width as in the
release. The token layout
(17 prefix tokens + 16 x 16) is AliTok's tokenizer's.
"""
from __future__ import annotations

from pathlib import Path

import torch

from rear.config import AlignConfig, Backbone, GeneratorConfig, SampleConfig
from rear.generator import Generator, build_generator
from rear.weights import load_state

PREFIX_TOKENS, GRID_TOKENS = 17, 256
# (width, depth) of the released AliTok-B/L/XL -> the CFG scale and power of its configs/alitok_*.yaml
RELEASED_SAMPLING = {(768, 24): (16.0, 1.8), (1024, 24): (6.0, 0.7), (1280, 32): (13.0, 1.4)}
_SIGNATURE = ("embeddings.weight", "output.weight", "norm.weight", "blocks.0.attn.q_norm.weight", "blocks.0.mlp.w1.weight")


def config_from_alitok(state: dict[str, torch.Tensor], name: str = "checkpoint") -> GeneratorConfig:
    """GeneratorConfig of an AliTok AR state dict (the alignment heads off: the release has none)."""
    missing = [key for key in _SIGNATURE if key not in state]
    if missing:
        looks = ("a reAR/RAR generator (use rear convert)" if "adaln_before_head.adaLN_modulation.1.weight" in state
                 else "a tokenizer" if any(k.startswith(("encoder.", "decoder.", "quantize.")) for k in state)
                 else "something else")
        raise ValueError(f"{name} is not an AliTok AR generator (no {missing[0]}); it looks like {looks}")
    vocab, width = state["embeddings.weight"].shape
    codes = state["output.weight"].shape[0]
    depth = len({key.split(".")[1] for key in state if key.startswith("blocks.")})
    heads = width // state["blocks.0.attn.q_norm.weight"].shape[0]
    return GeneratorConfig(
        backbone=Backbone.LLAMA,
        codebook_size=codes,
        num_classes=vocab - codes - 2,
        num_tokens=PREFIX_TOKENS + GRID_TOKENS,
        prefix_tokens=PREFIX_TOKENS,
        width=width,
        depth=depth,
        heads=heads,
        align=AlignConfig(encode=False, decode=False, decode_layer=3 * depth // 4),
    ).validate()


def load_alitok_generator(path: str | Path) -> Generator:
    """A Llama-backbone Generator holding the weights of an AliTok AR checkpoint (.bin / .pth / .safetensors)."""
    from rear.weights import read_state_dict, strip_prefixes

    state = strip_prefixes(read_state_dict(path))
    model = build_generator(config_from_alitok(state, str(path)))
    load_state(model, state, str(path))
    return model


def sample_for_alitok(config: GeneratorConfig) -> SampleConfig | None:
    """The release's sampling settings for a model of AliTok-B/L/XL's size; None for any other size."""
    settings = RELEASED_SAMPLING.get((config.width, config.depth))
    return SampleConfig(cfg_scale=settings[0], cfg_power=settings[1]) if settings else None
