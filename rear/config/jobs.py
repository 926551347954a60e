"""The other jobs: the conv VQ tokenizer and its training, the domain classifier, `rear serve`, `rear study`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Optional

from rear.config.schema import AT_LEAST_0, AT_LEAST_1, check_ranges, FRACTION, POSITIVE, PROBABILITY, Range
from rear.config.training import OptimConfig, TrainConfig


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
