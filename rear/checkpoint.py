"""Generator checkpoints: a folder with `model.safetensors` and `config.json`, written atomically."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from rear.config import GeneratorConfig, merge, to_dict
from rear.generator import Generator

WEIGHTS, CONFIG = "model.safetensors", "config.json"


def load_state(model: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy `state` into `model`; raise ValueError naming the first key or shape that does not fit."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(
            f"{source} does not fit this model config: missing {missing[:3]}, "
            f"unexpected {unexpected[:3]}; pass the config the weights were trained with"
        )
    for name, tensor in state.items():
        if tensor.shape != expected[name].shape:
            raise ValueError(
                f"{source}: tensor {name!r} has shape {tuple(tensor.shape)} but the config implies "
                f"{tuple(expected[name].shape)}; pass the config the weights were trained with"
            )
    model.load_state_dict(state)


def replace_dir(build: callable, target: Path) -> None:
    """Fill a fresh sibling folder with `build(folder)`, then swap it in for `target` by renames."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(staging)
        old = target.with_name(f".{target.name}.old")
        if target.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def save_generator(model: Generator, directory: str | Path) -> Path:
    """Save weights (safetensors) and config (JSON) to `directory`, replacing it atomically."""

    def build(folder: Path) -> None:
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps(to_dict(model.config), indent=2))

    replace_dir(build, Path(directory))
    return Path(directory)


def load_generator(directory: str | Path, device: str | torch.device = "cpu") -> Generator:
    """Rebuild a generator saved by `save_generator`."""
    directory = Path(directory)
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"{directory / name} not found; a generator checkpoint is a folder with {WEIGHTS} and {CONFIG}"
            )
    config = merge(GeneratorConfig, json.loads((directory / CONFIG).read_text()))
    model = Generator(config)
    load_state(model, load_file(directory / WEIGHTS), str(directory / WEIGHTS))
    return model.to(device)
