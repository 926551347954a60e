"""Load generators saved by the official reAR release (github QY-H00/reAR).

Its state-dict names are ours, so loading is a key copy; the YAML maps onto GeneratorConfig and the
over-sized position / step tables set the `extra_*_rows` fields.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from rear.config import AlignConfig, GeneratorConfig, SampleConfig
from rear.generator import Generator, build_generator
from rear.weights import load_state, read_state_dict, strip_prefixes


def config_from_official(config_yaml: str | Path, state: dict[str, torch.Tensor]) -> GeneratorConfig:
    """GeneratorConfig from an official YAML (configs/rear_*.yaml) and the checkpoint's tables."""
    raw = OmegaConf.load(config_yaml)
    try:
        gen, vq = raw.model.generator, raw.model.vq_model
        width, tokens = int(gen.hidden_size), int(gen.image_seq_len)
        has_heads = bool(gen.get("transition_alignment", False))
        align = AlignConfig(
            encode=has_heads and bool(gen.get("encode_align", True)) and "encode_align_mlp.0.weight" in state,
            decode=has_heads and bool(gen.get("decode_align", True)) and "decode_align_mlp.0.weight" in state,
            encode_layer=int(gen.get("encode_align_layer_idx", 0)),
            decode_layer=int(gen.get("decode_align_layer_idx", 15)),  # the release's default
            projection_dim=int(gen.get("projection_dim", 2048)),
            code_dim=int(gen.get("z_dim", 256)),
            weight=float(gen.get("transition_alignment_weight", 1.0)),
        )
        return GeneratorConfig(
            codebook_size=int(vq.codebook_size),
            num_classes=int(gen.condition_num_classes),
            num_tokens=tokens,
            width=width,
            depth=int(gen.num_hidden_layers),
            heads=int(gen.num_attention_heads),
            mlp_ratio=int(gen.intermediate_size) / width,
            dropout=float(gen.dropout),
            attn_dropout=float(gen.attn_drop),
            extra_position_rows=_rows(state, "pos_embed") - tokens,
            extra_step_rows=_rows(state, "timesteps_embeddings") - tokens,
            align=align,
        ).validate()
    except (AttributeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{config_yaml} is not an official reAR config (model.generator / model.vq_model): {error}"
        ) from error


def sample_from_official(config_yaml: str | Path) -> SampleConfig:
    """The sampling settings an official YAML ships (e.g. reAR-S: CFG 22, power 2.75)."""
    gen = OmegaConf.load(config_yaml).model.generator
    try:
        return SampleConfig(cfg_scale=float(gen.guidance_scale), cfg_power=float(gen.guidance_scale_pow),
                            temperature=float(gen.get("randomize_temperature", 1.0)))
    except AttributeError as error:
        raise ValueError(f"{config_yaml} has no model.generator.guidance_scale / guidance_scale_pow: {error}") from None


def _rows(state: dict[str, torch.Tensor], name: str) -> int:
    if name not in state or state[name].dim() != 3:
        raise ValueError(f"checkpoint has no [1, rows, D] tensor {name!r}; is it a reAR generator?")
    return state[name].shape[1]


def load_official_generator(checkpoint: str | Path, config_yaml: str | Path) -> Generator:
    """A Generator holding the weights of an official reAR checkpoint and its YAML config."""
    state = strip_prefixes(read_state_dict(checkpoint))
    model = build_generator(config_from_official(config_yaml, state))
    load_state(model, state, str(checkpoint))
    return model
