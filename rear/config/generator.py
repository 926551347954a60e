"""The generator and its alignment heads, and the named sizes (presets) of the official models."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar

from rear.config.schema import AT_LEAST_0, AT_LEAST_1, check_ranges, FRACTION, POSITIVE, Range, to_dict


@dataclass
class AlignConfig:
    """Codebook-embedding alignment heads (docs/method.md, 3)."""

    encode: bool = True  # head on a shallow layer: recover the current token's code vector
    decode: bool = True  # head on a deep layer: predict the next token's code vector
    encode_layer: int = 0  # block whose output feeds the encode head
    decode_layer: int = 18  # block whose output feeds the decode head (3/4 of the depth)
    projection_dim: int = 2048  # P, hidden width of both heads
    code_dim: int = 256  # Z, the tokenizer's codebook dimension
    weight: float = 1.0  # w in  CE + w * (encode + decode)
    RANGES: ClassVar = {"encode_layer": AT_LEAST_0, "decode_layer": AT_LEAST_0, "projection_dim": AT_LEAST_1,
                        "code_dim": AT_LEAST_1, "weight": AT_LEAST_0}

    @property
    def enabled(self) -> bool:
        return self.encode or self.decode


class Backbone(Enum):
    """The transformer behind the generator interface (rear.generator.BACKBONES)."""

    RAR = "rar"  # the reAR release: adaLN-Zero blocks, learned absolute and target-aware positions
    LLAMA = "llama"  # AliTok's AR model: class-token prefix, RMSNorm, QK-norm, SwiGLU, RoPE


# the GeneratorConfig fields only one backbone reads (below, and rear/generator/rar.py, llama.py)
BACKBONE_ONLY = {Backbone.RAR: ("extra_position_rows", "extra_step_rows"),
                 Backbone.LLAMA: ("prefix_tokens", "rope_base", "mlp_multiple", "token_dropout")}


@dataclass
class GeneratorConfig:
    """The raster-order class-conditional transformer (docs/method.md, 1 and 11)."""

    backbone: Backbone = Backbone.RAR
    codebook_size: int = 1024  # K image codes
    num_classes: int = 1000  # C classes; label C is the null class
    num_tokens: int = 256  # N tokens per image, raster order
    width: int = 768  # D
    depth: int = 24
    heads: int = 16
    mlp_ratio: float = 4.0
    dropout: float = 0.1
    attn_dropout: float = 0.1
    # The official release sizes the position tables N+1024 rows and the step table N+100 rows.
    # We keep that layout so weights move between the two code bases by a plain key copy and the
    # preset parameter counts match the release; the extra rows are never read.
    extra_position_rows: int = 1024
    extra_step_rows: int = 100
    # Llama backbone only. RoPE is 1D over the first `prefix_tokens` tokens (AliTok's 17) and 2D over
    # the square grid of the rest; the SwiGLU hidden width is 2/3 of mlp_ratio * width, rounded up to
    # a multiple of `mlp_multiple`.
    prefix_tokens: int = 0
    rope_base: float = 10_000.0
    mlp_multiple: int = 256
    token_dropout: float = 0.1  # dropout on the input embeddings
    align: AlignConfig = field(default_factory=AlignConfig)
    RANGES: ClassVar = {**{name: AT_LEAST_1 for name in ("codebook_size", "num_classes", "num_tokens", "width", "depth",
                                                        "heads", "mlp_multiple")},
                        "mlp_ratio": POSITIVE, "dropout": FRACTION, "attn_dropout": FRACTION, "token_dropout": FRACTION,
                        "prefix_tokens": AT_LEAST_0, "rope_base": Range(1, low_open=True)}  # table rows: validate

    def own_fields(self) -> dict:
        """to_dict of the config without the fields only the other backbone reads (a model card's view)."""
        others = {name for backbone, names in BACKBONE_ONLY.items() if backbone is not self.backbone for name in names}
        return {key: value for key, value in to_dict(self).items() if key not in others}

    @property
    def vocab_size(self) -> int:
        """Rows of the token table: K codes, the mask token, C classes, the null class."""
        return self.codebook_size + 1 + self.num_classes + 1

    def validate(self) -> "GeneratorConfig":
        """Raise ValueError naming the first inconsistent field."""
        if self.extra_position_rows < 2 or self.extra_step_rows < 2:
            raise ValueError("position and step tables need at least 2 rows beyond num_tokens (extra_position_rows, "
                             f"extra_step_rows: {self.extra_position_rows}, {self.extra_step_rows})")
        check_ranges(self)
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.backbone is Backbone.LLAMA:
            grid = self.num_tokens - self.prefix_tokens
            if not 0 <= self.prefix_tokens <= self.num_tokens or math.isqrt(max(grid, 0)) ** 2 != grid:
                raise ValueError(f"num_tokens {self.num_tokens} minus prefix_tokens {self.prefix_tokens} must be a "
                                 "square grid for the llama backbone's 2D RoPE (set prefix_tokens=num_tokens "
                                 "for 1D tokens)")
            if (self.width // self.heads) % 4:
                raise ValueError(f"the llama backbone's 2D RoPE needs a head width divisible by 4, "
                                 f"got {self.width // self.heads}")
        for name in ("encode_layer", "decode_layer"):
            layer = getattr(self.align, name)
            if not 0 <= layer < self.depth:
                raise ValueError(f"align.{name}={layer} is outside the {self.depth} blocks")
        return self


def _preset(width: int, depth: int, heads: int, **kwargs: Any) -> GeneratorConfig:
    align = AlignConfig(decode_layer=3 * depth // 4, **kwargs.pop("align", {}))
    return GeneratorConfig(width=width, depth=depth, heads=heads, align=align, **kwargs)


# Official sizes (ImageNet: 1024 codes, 1000 classes, 16x16 tokens) and tiny CPU sizes.
PRESETS: dict[str, GeneratorConfig] = {
    "rear-s": _preset(768, 20, 16),
    "rear-b": _preset(768, 24, 16),
    "rear-l": _preset(1024, 24, 16),
    "rear-cpu": _preset(256, 6, 4, align={"projection_dim": 512}),
    "rear-tiny": _preset(
        64, 2, 2, extra_position_rows=2, extra_step_rows=2, align={"projection_dim": 64}
    ),
    # AliTok's AR models (Llama backbone; 4096 codes of 32 dims, 17 prefix + 16x16 tokens)
    **{
        f"alitok-{size}": _preset(
            width, depth, 16, backbone=Backbone.LLAMA, codebook_size=4096, num_tokens=273, prefix_tokens=17,
            align={"code_dim": 32},
        )
        for size, width, depth in (("b", 768, 24), ("l", 1024, 24), ("xl", 1280, 32))
    },
    "llama-cpu": _preset(256, 6, 4, backbone=Backbone.LLAMA, align={"projection_dim": 512}),
    "llama-tiny": _preset(64, 2, 2, backbone=Backbone.LLAMA, align={"projection_dim": 64}),
}


def generator_preset(name: str, **overrides: Any) -> GeneratorConfig:
    """A preset by name with top-level fields replaced, e.g. codebook_size=512."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    align = overrides.pop("align", None)
    config = dataclasses.replace(PRESETS[name], **overrides)
    if align is not None:
        config.align = dataclasses.replace(config.align, **align)
    else:
        config.align = dataclasses.replace(config.align)
    return config.validate()
