"""A training run: the noisy context, the optimizer, the sampling settings, and the run itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import ClassVar, Optional

from omegaconf import MISSING

from rear.config.generator import GeneratorConfig
from rear.config.schema import AT_LEAST_0, AT_LEAST_1, check_ranges, FRACTION, POSITIVE, Range


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
class CCAConfig:
    """Condition Contrastive Alignment (Chen et al., ICLR 2025; docs/cca.md): fine-tune the checkpoint
    `init` so that it samples without guidance. For images x with labels c and mismatched labels c' != c,
    r(x, c) = log p(x | c) - log p_ref(x | c) summed over the tokens, p_ref the frozen `init`, and
    L = (-log sigmoid(beta r(x, c)) - lam log sigmoid(-beta r(x, c'))) / max(lam, 1)."""

    init: Optional[str] = None  # None: an ordinary run; a generator checkpoint folder: its CCA fine-tune
    beta: float = 0.02  # thu-ml/CCA's default
    lam: float = 1000.0  # the negatives' weight: larger trades diversity for fidelity, as a CFG scale does
    # rows whose label (and negative) become the null class and count as positives: keeps the
    # unconditional model, so guided sampling still works after the fine-tune (thu-ml/CCA's uncond_ratio)
    uncond_fraction: float = 0.0
    RANGES: ClassVar = {"beta": POSITIVE, "lam": AT_LEAST_0, "uncond_fraction": FRACTION}


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
    cca: CCAConfig = field(default_factory=CCAConfig)  # cca.init set: a guidance-free fine-tune (rear.train.cca)
    steps: int = 250_000  # optimizer steps
    batch_size: int = 2048  # global images per optimizer step, over all ranks and micro-batches
    grad_accumulation: int = 2  # micro-batches per optimizer step on each rank
    label_dropout: float = 0.1
    bf16: bool = True  # autocast matmuls to bfloat16 where native (rear.precision), else float32
    ema_decay: float = 0.0  # 0 disables the EMA copy
    activation_checkpointing: bool = False
    # torch.compile the training forward and backward (same losses; benchmarks/bench_train.py --compile
    # measures whether it pays on a device)
    compile: bool = False
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
        if self.cca.init is not None and (self.noise.enabled or self.label_dropout):
            raise ValueError("a CCA fine-tune (cca.init) compares likelihoods of clean images under their own "
                             "labels: set noise.enabled=false and label_dropout=0 (cca.uncond_fraction keeps the "
                             "null class)")
        self.generator.validate()
        return self
