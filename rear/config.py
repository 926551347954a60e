"""Every default in one place: typed configs for the generator and its reAR regularizers.

Configs are plain dataclasses. YAML files and `key=value` overrides are merged onto them with
OmegaConf's structured mode, which rejects unknown keys and wrong types.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, ClassVar, Optional, TypeVar

import yaml
from omegaconf import MISSING, OmegaConf
from omegaconf.errors import MissingMandatoryValue, OmegaConfBaseException


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take; every float must also be finite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False

    def __str__(self) -> str:
        return (f"{'(' if self.low_open else '['}{self.low:g}, {self.high:g}"
                f"{')' if self.high_open or self.high == math.inf else ']'}")

    def check(self, name: str, value: Any) -> None:
        """Raise ValueError naming `name` when `value` (None passes: an optional setting left off) is out."""
        if value is None or isinstance(value, bool):
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number in {self}, got {value}")
        if value < self.low or value > self.high or (self.low_open and value == self.low) or (
                self.high_open and value == self.high):
            raise ValueError(f"{name} must lie in {self}, got {value:g}")


AT_LEAST_0, AT_LEAST_1, POSITIVE = Range(0), Range(1), Range(0, low_open=True)
FRACTION, PROBABILITY = Range(0, 1, high_open=True), Range(0, 1)  # [0, 1) and [0, 1]


def check_ranges(config: Any, prefix: str = "") -> None:
    """Every numeric setting of a config dataclass (nested ones too) within its class's RANGES, every
    float finite; a ValueError names the first key that is not, e.g. `optim.grad_clip`."""
    ranges = getattr(type(config), "RANGES", {})
    for f in dataclasses.fields(config):
        value, name = getattr(config, f.name), prefix + f.name
        if dataclasses.is_dataclass(value):
            check_ranges(value, name + ".")
        elif f.name in ranges:
            ranges[f.name].check(name, value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value}")


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


class Corruption(Enum):
    """What a corrupted context position becomes."""

    SWITCH = "switch"  # a uniform random code (it may equal the original)
    MASK = "mask"  # the mask token K


@dataclass
class NoiseConfig:
    """Noisy-context regularization (docs/method.md, 2); r anneals over optimizer steps."""

    enabled: bool = True
    corruption: Corruption = Corruption.SWITCH
    anneal_start: int = 0  # r = 1 up to here
    anneal_end: int = 187_500  # r falls linearly to 0 here; the rest trains clean
    RANGES: ClassVar = {"anneal_start": AT_LEAST_0, "anneal_end": AT_LEAST_0}


@dataclass
class OptimConfig:
    """AdamW with linear warmup then cosine decay (docs/method.md, 4)."""

    learning_rate: float = 4e-4
    end_learning_rate: float = 1e-5
    warmup_steps: int = 62_500
    beta1: float = 0.9
    beta2: float = 0.96
    weight_decay: float = 0.03  # Linear weights only: not norms, biases, embeddings, tables
    grad_clip: float = 1.0  # max global gradient norm (0 would zero every gradient)
    RANGES: ClassVar = {"learning_rate": POSITIVE, "end_learning_rate": AT_LEAST_0, "warmup_steps": AT_LEAST_0,
                        "beta1": FRACTION, "beta2": FRACTION, "weight_decay": AT_LEAST_0, "grad_clip": POSITIVE}


@dataclass
class SampleConfig:
    """Sampling settings (docs/method.md, 5)."""

    cfg_scale: float = 15.0  # 1 = no guidance
    cfg_power: float = 2.5
    temperature: float = 1.0
    top_k: Optional[int] = None  # None: off
    top_p: Optional[float] = None  # None: off
    # a temperature or top-p below 1e-6 is greedy in effect and would overflow float32 on the way
    RANGES: ClassVar = {"cfg_scale": Range(1), "cfg_power": POSITIVE, "temperature": Range(1e-6), "top_k": AT_LEAST_1,
                        "top_p": Range(1e-6, 1)}

    def validate(self) -> "SampleConfig":
        """Raise ValueError naming the first setting out of range (every sampling path calls it)."""
        check_ranges(self)
        return self


@dataclass
class TrainConfig:
    """One training run: `rear train CONFIG.yaml key=value ...` merges onto these defaults."""

    store: str = MISSING  # pretokenized store folder (rear pretokenize)
    tokenizer: str = MISSING  # the tokenizer that made the store: its codebook vectors are the targets
    out_dir: str = "runs/train"
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    # take generator.codebook_size, num_tokens, num_classes and align.code_dim from the store's manifest
    # (own images: nothing to count by hand); the checkpoint records the values taken
    sizes_from_store: bool = False
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    steps: int = 250_000  # optimizer steps
    batch_size: int = 2048  # global images per optimizer step, over all ranks and micro-batches
    grad_accumulation: int = 2  # micro-batches per optimizer step on each rank
    label_dropout: float = 0.1
    bf16: bool = True  # autocast matmuls to bfloat16 where native (rear.precision), else float32
    ema_decay: float = 0.0  # 0 disables the EMA copy
    activation_checkpointing: bool = False
    seed: int = 42
    threads: int = 0  # CPU threads per rank; 0 keeps torch's default
    log_every: int = 50
    sample_every: int = 5_000  # 0: only at the end
    samples_per_class: int = 4  # 0: no sample grids
    sample_classes: int = 10  # classes shown in sample grids
    checkpoint_every: int = 50_000
    skip_nonfinite: int = 0  # steps with a non-finite loss or gradient norm to skip; one more stops the run
    RANGES: ClassVar = {**{name: AT_LEAST_1 for name in ("steps", "batch_size", "grad_accumulation", "log_every",
                                                        "checkpoint_every")},
                        **{name: AT_LEAST_0 for name in ("sample_every", "samples_per_class", "sample_classes",
                                                        "skip_nonfinite", "threads", "seed")},
                        "label_dropout": FRACTION, "ema_decay": FRACTION}

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first setting out of range or inconsistent."""
        check_ranges(self)
        if self.noise.anneal_end < self.noise.anneal_start:
            raise ValueError(f"noise.anneal_end ({self.noise.anneal_end}) must not come before noise.anneal_start "
                             f"({self.noise.anneal_start})")
        self.generator.validate()
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


T = TypeVar("T")


def _source_name(source: Any) -> str:
    if isinstance(source, (list, tuple)):
        return f"override {' '.join(source)}" if len(source) == 1 else "overrides"
    return f"config {source}" if isinstance(source, str) else "settings"


def merge(schema: type[T] | T, *sources: Any) -> T:
    """Dataclass defaults <- dicts / YAML (or JSON) paths / `key=value` lists, unknown keys rejected.

    Every failure is a one-line ValueError naming the source and the key: an unknown key, a value
    of the wrong type, malformed YAML, a mandatory value left unset."""
    merged = OmegaConf.structured(schema)
    for source in sources:
        try:
            if isinstance(source, (list, tuple)):
                layer = OmegaConf.from_dotlist(list(source))
            elif isinstance(source, str):
                layer = OmegaConf.load(source)
            else:
                layer = OmegaConf.create(source)
            if not OmegaConf.is_dict(layer):  # a YAML whose top level is a list or a scalar
                raise ValueError(f"{_source_name(source)}: the top level must be a mapping of settings (key: value), "
                                 f"got a {'list' if OmegaConf.is_list(layer) else 'value'}")
            merged = OmegaConf.merge(merged, layer)
        except OmegaConfBaseException as error:
            key = f" (key {error.full_key})" if getattr(error, "full_key", None) else ""
            raise ValueError(f"{_source_name(source)}: {(str(error).strip().splitlines() or [type(error).__name__])[0]}"
                             f"{key}") from None
        except yaml.YAMLError as error:
            where = f" at line {error.problem_mark.line + 1}" if getattr(error, "problem_mark", None) else ""
            raise ValueError(f"{_source_name(source)} is not valid YAML/JSON{where}: "
                             f"{getattr(error, 'problem', None) or error}") from None
    try:
        result = OmegaConf.to_object(merged)
    except MissingMandatoryValue as error:
        raise ValueError(f"{error.full_key} is not set: give it in the config or as {error.full_key}=...") from None
    except OmegaConfBaseException as error:  # e.g. ${oc.env:VAR,default} with a value of the wrong type
        raise ValueError(f"{getattr(error, 'full_key', None) or 'a setting'}: "
                         f"{(str(error).strip().splitlines() or [type(error).__name__])[0]}") from None
    if dataclasses.is_dataclass(result):
        check_ranges(result)  # every numeric setting in range before any work
    return result


def flatten(tree: dict, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}: the dotted key of every leaf of nested dicts."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[prefix + str(key)] = value
    return flat


def chosen_keys(*sources: Any) -> set[str]:
    """The dotted keys that YAML paths, dicts or `key=value` lists set explicitly (what data-derived
    defaults must not override)."""
    keys: set[str] = set()
    for source in sources:
        if isinstance(source, (list, tuple)):
            keys |= {item.split("=", 1)[0] for item in source}
        else:
            layer = OmegaConf.load(source) if isinstance(source, str) else OmegaConf.create(source)
            keys |= set(flatten(OmegaConf.to_container(layer, resolve=False)))
    return keys


def to_dict(config: Any) -> dict:
    """A plain nested dict of a config dataclass (JSON-ready: enums become their names)."""
    return dataclasses.asdict(
        config, dict_factory=lambda items: {k: v.name if isinstance(v, Enum) else v for k, v in items}
    )


# --- Conv VQ tokenizer (rear/tokenizer/conv_vq.py) and its training (rear/train/tokenizer.py) ---


@dataclass
class ConvVQConfig:
    """A small convolutional VQ tokenizer with unit-length codes (cosine nearest-code lookup)."""

    image_size: int = 32  # H = W
    channels: int = 1  # C
    codebook_size: int = 512  # K
    code_dim: int = 8  # Z; a low-dimensional unit sphere keeps every code in use
    # One entry per resolution level: the first at full resolution, each further one halving it by a
    # strided conv, so the token grid is image_size / 2**(len(widths) - 1) (32 -> 8 x 8).
    # A thin full-resolution level keeps a step cheap on CPUs without AVX-512.
    widths: list[int] = field(default_factory=lambda: [16, 64, 128])
    res_blocks: list[int] = field(default_factory=lambda: [0, 1, 1])  # residual blocks per level
    groups: int = 8  # GroupNorm groups
    RANGES: ClassVar = {"image_size": AT_LEAST_1, "channels": Range(1, 3), "codebook_size": AT_LEAST_1,
                        "code_dim": AT_LEAST_1, "groups": AT_LEAST_1}

    def validate(self) -> "ConvVQConfig":
        """Raise ValueError naming the first inconsistent field."""
        check_ranges(self)
        if len(self.widths) != len(self.res_blocks) or not self.widths:
            raise ValueError(f"widths {self.widths} and res_blocks {self.res_blocks} need one entry per level")
        if self.image_size % 2 ** (len(self.widths) - 1):
            raise ValueError(f"image_size {self.image_size} is not divisible by 2**{len(self.widths) - 1}")
        if any(width % self.groups for width in self.widths):
            raise ValueError(f"every width in {self.widths} must be divisible by groups {self.groups}")
        return self


@dataclass
class TokenizerTrainConfig:
    """Training a ConvVQ tokenizer: MSE, AdamW with warmup + cosine, EMA codebook with restarts."""

    model: ConvVQConfig = field(default_factory=ConvVQConfig)
    data_dir: Optional[str] = None  # Fashion-MNIST IDX folder; None searches the usual places
    out: str = "runs/tokenizer"  # folder for model.safetensors, config.json, metrics.json
    steps: int = 1000
    batch_size: int = 64
    # AdamW with warmup + cosine; weight decay only touches Linear weights, and this model has none
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            learning_rate=2e-3, end_learning_rate=0.0, warmup_steps=100, beta2=0.99, weight_decay=0.0
        )
    )
    commitment: float = 0.25  # beta in  MSE + beta * |latent - sg(code)|^2
    codebook_decay: float = 0.99  # EMA decay of code counts and sums (online k-means)
    # A code is dead when its EMA count falls below this fraction of the mean count per code; it
    # restarts on a random encoder output of the current batch.
    dead_fraction: float = 0.25
    eval_size: int = 10000  # held-out images evaluated after training
    eval_batch_size: int = 500
    seed: int = 0
    threads: int = 2  # torch CPU threads while training
    bf16: bool = True  # autocast convs to bfloat16 where native (CUDA, CPUs with AMX / AVX512-BF16)
    RANGES: ClassVar = {"steps": AT_LEAST_1, "batch_size": AT_LEAST_1, "commitment": AT_LEAST_0,
                        "codebook_decay": FRACTION, "dead_fraction": PROBABILITY, "eval_size": AT_LEAST_1,
                        "eval_batch_size": AT_LEAST_1, "seed": AT_LEAST_0, "threads": AT_LEAST_0}


# --- Evaluation (rear/evaluation) ---


@dataclass
class ClassifierConfig:
    """The domain classifier whose features replace InceptionV3 on small datasets."""

    image_size: int = 32
    channels: int = 1
    num_classes: int = 10
    widths: list[int] = field(default_factory=lambda: [32, 64, 128])  # conv stages, each halving H
    feature_dim: int = 256  # penultimate features: FID and precision/recall
    epochs: int = 4
    # at least this many steps, in more epochs where the data is small (4 epochs of 1,620 colour shapes
    # are 48 steps: 56.7% held-out accuracy; 400 steps: 100%); Fashion-MNIST's 4 epochs are 1,872 steps
    min_steps: int = 500
    batch_size: int = 128
    learning_rate: float = 3e-3
    seed: int = 0
    RANGES: ClassVar = {"image_size": AT_LEAST_1, "channels": Range(1, 3), "num_classes": Range(2),
                        "feature_dim": AT_LEAST_1, "epochs": AT_LEAST_1, "min_steps": AT_LEAST_0, "batch_size": AT_LEAST_1,
                        "learning_rate": POSITIVE, "seed": AT_LEAST_0}


# --- `rear serve`: the local sampling page (rear/serve) ---


@dataclass(frozen=True)
class ServeConfig:
    """Bounds on what one request may ask of the machine, and the page's own defaults."""

    max_images: int = 64  # images per request
    images: int = 8  # the page's default count
    max_cfg_scale: float = 50.0  # guidance lies in [1, max]; 1 = none
    max_cfg_power: float = 10.0  # the schedule's power lies in (0, max]
    max_temperature: float = 10.0  # temperature lies in (0, max]
    snapshots: int = 8  # partial rasters decoded per generation (2D tokenizers)
    progress_steps: int = 32  # token-count updates per generation
    kept_jobs: int = 4  # finished grids kept for download
    RANGES: ClassVar = {"max_images": AT_LEAST_1, "images": AT_LEAST_1, "max_cfg_scale": Range(1),
                        "max_cfg_power": POSITIVE, "max_temperature": POSITIVE, "snapshots": AT_LEAST_1,
                        "progress_steps": AT_LEAST_1, "kept_jobs": AT_LEAST_1}


# --- `rear study`: plain AR, its two ablations and reAR, several seeds (rear/study) ---


@dataclass
class StudyConfig:
    """One study: a data split, a shared tokenizer and classifier, the four arms over several seeds.

    The arms share `train` (generator, steps, schedule) and differ only by rear.study.ARMS; run k of
    an arm uses seed `train.seed + k`. Evaluation points, sample counts and the CFG grid are the same
    for every arm.
    """

    out: str = "runs/study/fashion_mnist"  # scratch: tokenizer, classifier, stores, runs, samples
    results: str = "results/fashion_mnist"  # results.json, table.md, plots, grids (what is committed)
    # the tokenizer, classifier and stores: under `results` (None), or shared with another study's
    # results folder, so that two studies (e.g. two backbones) are scored by the same instruments
    instruments: Optional[str] = None
    # the classifier alone from another study's results folder (None: with the instruments), so that a
    # study with its own tokenizer (e.g. another code size) is still scored by the same yardstick
    classifier_from: Optional[str] = None
    data_dir: Optional[str] = None  # Fashion-MNIST IDX folder; None searches the usual places
    threads: int = 1  # torch CPU threads for every unit
    # Fashion-MNIST train, split once per class by `split_seed`: validation (CFG selection),
    # noise-floor images (real held-out vs test), then the generator's training images
    # (0 = all the rest). The test split is only ever scored against.
    split_seed: int = 0
    val_per_class: int = 500
    floor_per_class: int = 1000
    train_per_class: int = 400
    flip: bool = False  # a mirrored second view: Fashion-MNIST's shoes all face one way
    # runs per arm (rear.study.ARMS); plain AR and reAR need one or more, 0 leaves an ablation out
    seeds: dict[str, int] = field(default_factory=lambda: {"ar": 3, "noisy": 1, "embed": 1, "rear": 3})
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    # shared by every arm; store, tokenizer and out_dir are filled in by the study
    train: TrainConfig = field(default_factory=lambda: TrainConfig(store="", tokenizer=""))
    eval_fractions: list[float] = field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0])
    curve_samples: int = 2000  # per evaluation point, at train.sample's CFG, FID against the test split
    cfg_grid: list[float] = field(default_factory=lambda: [1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0])
    # tried in order, per arm, while the arm's lowest validation FID sits at its largest CFG so far:
    # the chosen CFG is then an interior point of the grid (unless the extension runs out)
    cfg_grid_extension: list[float] = field(default_factory=list)
    val_samples: int = 2000  # per grid value, FID against the validation split (first seed of each arm)
    final_samples: int = 10_000  # class-balanced, at the arm's chosen CFG, scored against the test split
    # matched guidance: every final run also scored (final_samples, test split) at every CFG any arm
    # evaluated on validation, so that the arms compare at equal guidance as well as at their own
    matched_cfg: bool = True
    sample_batch_size: int = 250
    diagnose_count: int = 2000  # held-out (test) items for the correct-token ratio
    diagnose_noise: float = 0.5  # corruption bound r of the noisy context in the correct-token ratio
    retok_samples: int = 1000  # samples for re-tokenization consistency
    sfid: bool = True  # also sFID (seconds per score: a square root of a 1792 x 1792 covariance)
    RANGES: ClassVar = {**{name: AT_LEAST_1 for name in ("threads", "val_per_class", "curve_samples", "val_samples",
                                                        "final_samples", "sample_batch_size", "diagnose_count",
                                                        "retok_samples")},
                        "floor_per_class": Range(2), "train_per_class": AT_LEAST_0, "split_seed": AT_LEAST_0,
                        "diagnose_noise": PROBABILITY}
