"""Class-balanced samples on disk: PNGs and an ADM-compatible `.npz`, resumable, split over ranks.

Sample i has label i % C and comes from batch i // batch_size, which draws from a generator seeded
with (seed, batch): a resumed or re-split run writes exactly the files an uninterrupted one would.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from PIL import Image

from rear.config import SampleConfig, flatten
from rear.distributed import World
from rear.generator import Generator
from rear.images import class_grid, to_uint8
from rear.lock import locked
from rear.progress import bar
from rear.tokenizer.base import VQTokenizer
from rear.weights import state_fingerprint

SETTINGS, ARCHIVE, GRID = "settings.json", "samples.npz", "grid.png"  # grid: first 10 classes, 10 each


def png_path(folder: Path, index: int) -> Path:
    return folder / "png" / f"{index:06d}.png"


@locked(lambda out, **_: out)
def write_samples(
    model: Generator,
    tokenizer: VQTokenizer,
    out: str | Path,
    num_samples: int,
    sample: SampleConfig,
    *,
    batch_size: int = 64,
    seed: int = 0,
    world: World | None = None,
    provenance: dict | None = None,
    progress: bool = True,
    overwrite: bool = False,
    compiled: bool = False,
) -> Path:
    """Write `num_samples` PNGs, sample i of class i mod C (as even as N allows: the first N mod C classes
    get one more), and, on the main rank, the `.npz`;
    `compiled` samples with the compiled one-token step (the same tokens, faster on a GPU).

    A folder holding samples of the same weights and settings is resumed; one of other weights or
    settings is refused, or with `overwrite` emptied first."""
    world = world or World(0, 1, next(model.parameters()).device)
    C = model.config.num_classes
    tokenizer.check_fits(model.config.codebook_size, model.config.num_tokens, "the generator")
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    out = Path(out)
    # what the samples are: the generator and the tokenizer by content (a retrained file at the same path
    # is another input; the same file under another spelling of its path is not), with every setting
    settings = {"num_samples": num_samples, "num_classes": C, "batch_size": batch_size, "seed": seed,
                "sample": asdict(sample), "weights": state_fingerprint(model.state_dict()),
                "tokenizer": tokenizer.fingerprint()}
    if world.main:
        recorded = _identity(json.loads((out / SETTINGS).read_text())) if (out / SETTINGS).is_file() else None
        if recorded is not None and recorded != settings:
            if not overwrite:
                raise ValueError(f"{out} holds samples of other {_differences(recorded, settings)} ({out / SETTINGS}); "
                                 "pass --overwrite to replace them, or choose another folder")
            shutil.rmtree(out / "png", ignore_errors=True)
            (out / ARCHIVE).unlink(missing_ok=True)
        elif not (out / SETTINGS).is_file() and (out / "png").is_dir() and any((out / "png").iterdir()):
            raise ValueError(f"{out}/png holds samples without {SETTINGS}; their origin is unknown, "
                             "so remove them or choose another folder")
        (out / "png").mkdir(parents=True, exist_ok=True)
        (out / SETTINGS).write_text(json.dumps({**settings, "provenance": provenance or {}}, indent=2))
    if world.size > 1:
        dist.barrier()

    batches = range(world.rank, -(-num_samples // batch_size), world.size)
    todo = [b for b in batches
            if not all(png_path(out, i).is_file() for i in range(b * batch_size, min((b + 1) * batch_size, num_samples)))]
    for b in bar(todo, enabled=progress and world.main, desc="sample", unit="batch"):
        indices = torch.arange(b * batch_size, min((b + 1) * batch_size, num_samples))
        labels = (indices % C).to(world.device)
        rng = torch.Generator(world.device).manual_seed(seed * 1_000_003 + b)
        tokens = model.generate(labels, sample, rng=rng, compiled=compiled)
        for i, image in zip(indices.tolist(), to_uint8(tokenizer.decode(tokens).float())):
            tmp = png_path(out, i).with_suffix(".tmp.png")
            Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(tmp)
            tmp.replace(png_path(out, i))  # a killed run never leaves a half-written PNG
    if world.size > 1:
        dist.barrier()
    if world.main:
        archive(out, num_samples)
    return out / ARCHIVE


def _differences(recorded: dict, settings: dict) -> str:
    """"generator weights, sample.cfg_scale (3.0 -> 2.0)": what differs, inputs by name, settings with values."""
    old, new = flatten(recorded), flatten(settings)
    names = {"weights": "generator weights", "tokenizer": "tokenizer weights"}
    differ = [names.get(key) or f"{key} ({old.get(key)} -> {value})" for key, value in new.items() if old.get(key) != value]
    return ", ".join(differ) or "settings"


def _identity(recorded: dict) -> dict:
    """What a settings.json says the samples are, without where their inputs lay (`provenance`)."""
    return {k: v for k, v in recorded.items() if k != "provenance"} if isinstance(recorded, dict) else {}


def archive(out: Path, num_samples: int) -> Path:
    """Pack the PNGs into `samples.npz`: `arr_0` uint8 [n, H, W, 3] and `labels` [n]."""
    images = np.stack([np.asarray(Image.open(png_path(out, i)).convert("RGB")) for i in range(num_samples)])
    C = json.loads((out / SETTINGS).read_text())["num_classes"]
    labels = np.arange(num_samples) % C
    np.savez(out / ARCHIVE, arr_0=images, labels=labels)
    class_grid(images, labels, out / GRID, min(C, 10), per_class=min(10, num_samples // C))
    return out / ARCHIVE
