"""One-command FID reproduction: class-balanced samples with the checkpoint's own settings, scored
with the FID InceptionV3 against an ADM reference batch, everything written beside the samples.

`rear reproduce CHECKPOINT --tokenizer T --reference VIRTUAL_imagenet256_labeled.npz` (under torchrun
the sampling is split over the ranks; the main rank scores). The JSON holds the metrics, every
setting, the sampling throughput and the commit, so a figure can be traced to what made it.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Optional

import torch

from rear.config import SampleConfig
from rear.distributed import World
from rear.download import sha256
from rear.evaluation.evaluate import load_images, load_reference, open_extractor, score, write_metrics
from rear.evaluation.samples import write_samples
from rear.generator import Generator
from rear.provenance import git_commit
from rear.tokenizer.base import VQTokenizer

RESULT = "reproduce.json"


def reproduce(
    model: Generator,
    tokenizer: VQTokenizer,
    out: str | Path,
    reference: str | Path,
    sample: SampleConfig,
    *,
    num_samples: int = 50_000,
    batch_size: int = 64,
    seed: int = 0,
    inception: Optional[str] = None,
    world: Optional[World] = None,
    provenance: Optional[dict] = None,
    overwrite: bool = False,
    compiled: bool = False,
) -> Optional[dict]:
    """Sample `num_samples` into `out` (`compiled`: with the compiled one-token step), score them (main
    rank) and write `out/reproduce.json`; returns the record on the main rank, None on the others."""
    world = world or World(0, 1, next(model.parameters()).device)
    if not Path(reference).is_file():
        raise FileNotFoundError(f"reference batch {reference} not found; the ImageNet 256 one is ADM's "
                                "VIRTUAL_imagenet256_labeled.npz (openai/guided-diffusion, evaluations)")
    extractor = open_extractor(inception=inception) if world.main else None  # fail before hours of sampling
    resumed = (Path(out) / "png").is_dir() and not overwrite  # then this call samples only what is missing
    began = time.perf_counter()
    path = write_samples(model, tokenizer, out, num_samples, sample, batch_size=batch_size, seed=seed, world=world,
                         provenance=provenance, overwrite=overwrite, compiled=compiled)
    seconds = time.perf_counter() - began
    if not world.main:
        return None
    images, _ = load_images(path)
    stats = load_reference(reference, extractor.embed, extractor.fingerprint)
    if "arr_0" in stats and stats["arr_0"].shape[1:3] != images.shape[1:3]:
        raise ValueError(f"reference {reference} holds {stats['arr_0'].shape[1]} px images, the samples are "
                         f"{images.shape[1]} px")
    metrics = score(extractor.embed(images), stats, None)  # Inception's classes are not the samples' labels
    # the inputs by content: the samples' folder records the generator and tokenizer (write_samples)
    record = {**metrics, "reference": str(reference), "reference_sha256": sha256(Path(reference)),
              "inception": extractor.fingerprint, "samples": str(path), "sample": dataclasses.asdict(sample),
              "num_samples": num_samples, "batch_size": batch_size, "seed": seed, "ranks": world.size,
              "device": str(world.device), "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
              "compiled": compiled, "sampling_seconds": seconds,
              "images_per_s": None if resumed else num_samples / seconds, "torch": torch.__version__, "commit": git_commit(),
              **(provenance or {})}
    write_metrics(record, Path(out) / RESULT)
    return record
