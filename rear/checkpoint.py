"""Generator checkpoints: a folder with `model.safetensors` and `config.json`, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file

from rear.config import GeneratorConfig, merge, to_dict
from rear.generator import Generator, build_generator
from rear.weights import CONFIG, WEIGHTS, load_state, read_tensors, replace_dir


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
    config = merge(GeneratorConfig, str(directory / CONFIG))
    model = build_generator(config)
    load_state(model, read_tensors(directory / WEIGHTS), str(directory / WEIGHTS))
    return model.to(device)
