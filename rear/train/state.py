"""Training checkpoints: weights (safetensors), generator config, optimizer / RNG / step state.

Folder: model.safetensors + config.json + generation_config.json (loadable by
rear.checkpoint.load_generator; sampled with the run's `sample` settings), ema.safetensors (optional),
train_state.pt (optimizer, step, RNG states; tensors and numbers only, so it reads with
weights_only=True), train_config.yaml, inputs.json (the store's and tokenizer's content fingerprints: a
resume refuses inputs rebuilt in place). The whole folder is swapped in atomically.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Optional, Sequence

import torch
from omegaconf import OmegaConf

from rear.checkpoint import write_generator
from rear.hub import CardInfo, describe_tokenizer
from rear.weights import WEIGHTS, load_state, read_tensors, read_torch_file, replace_dir, write_weights
from rear.config import TrainConfig, flatten, merge, to_dict
from rear.generator import Generator

EMA, STATE, RUN_CONFIG, INPUTS = "ema.safetensors", "train_state.pt", "train_config.yaml", "inputs.json"
# what a resumed run may change: none of these alters a step taken or to come (cadence, threads, the
# sampling settings of grids and of generation_config.json, recomputation in the backward, the compiler)
RESUMABLE = ("out_dir", "threads", "log_every", "sample_every", "samples_per_class", "sample_classes",
             "checkpoint_every", "skip_nonfinite", "activation_checkpointing", "compile", "sample")


def check_recipe(folder: Path, config: TrainConfig, inputs: Optional[dict[str, str]] = None) -> None:
    """Refuse to resume the checkpoint in `folder` with another recipe (seed, batch, schedule, data, model,
    steps ...), naming every differing key; only RESUMABLE settings may change. Paths compare resolved;
    `inputs` ({"store": sha256, "tokenizer": fingerprint, "cca.init": fingerprint}) compare by content with those it recorded."""
    recorded = json.loads((folder / INPUTS).read_text()) if (folder / INPUTS).is_file() else {}
    for key, value in (inputs or {}).items():
        if recorded.get(key, value) != value:
            setting = functools.reduce(getattr, key.split("."), config)  # "store", "cca.init": the path it names
            raise ValueError(f"{folder} was trained on another {key} than {setting} holds now (sha256 "
                             f"{recorded[key][:12]}, now {value[:12]}): it was rebuilt or replaced in place; resume "
                             "with the original, or start a new out_dir")
    path = folder / RUN_CONFIG
    if not path.is_file():  # a checkpoint from before the file was written
        return
    saved = flatten(to_dict(merge(TrainConfig, str(path))))
    now = flatten(to_dict(config))
    for key in ("store", "tokenizer"):
        saved[key], now[key] = str(Path(saved[key]).resolve()), str(Path(now[key]).resolve())
    changed = [key for key in sorted(set(saved) | set(now))
               if key.split(".")[0] not in RESUMABLE and saved.get(key) != now.get(key)]
    if changed:
        shown = ", ".join(f"{key} ({saved.get(key)} -> {now.get(key)})" for key in changed[:4])
        raise ValueError(f"{folder} was trained with another recipe: {shown}{' ...' if len(changed) > 4 else ''}; "
                         f"resume with its {path.name} (only {', '.join(RESUMABLE)} may change) or choose another "
                         "out_dir")


def save_training(
    folder: Path,
    model: Generator,
    ema: Generator | None,
    optimizer: torch.optim.Optimizer,
    step: int,
    rng_states: list[torch.Tensor],
    config: TrainConfig,
    skipped: int = 0,
    class_names: Optional[Sequence[str]] = None,
    store: Optional[dict] = None,
    inputs: Optional[dict[str, str]] = None,
) -> None:
    """Write the checkpoint of `step` completed optimizer steps (`skipped` of them non-finite and
    skipped), replacing `folder` atomically; `class_names` are the store's, `store` its manifest (the
    data source and tokenizer the card names), `inputs` the content fingerprints a resume checks."""

    def build(staging: Path) -> None:
        made = (store or {}).get("tokenizer")
        tokenizer = (describe_tokenizer(made["class"], store["codebook_size"], store["code_dim"], store["grid"],
                                        store["channels"], store["image_size"], made["fingerprint"])
                     + f" ({config.tokenizer})") if made else config.tokenizer
        training = {"data": (store or {}).get("source", config.store), "store": config.store, "tokenizer": tokenizer,
                    "steps": f"{step} of {config.steps}",
                    "batch size": config.batch_size, "noisy context": config.noise.enabled,
                    "alignment": config.generator.align.enabled, "seed": config.seed}
        write_generator(staging, model, config.sample, class_names, CardInfo(training))
        if ema is not None:
            write_weights(ema, staging / EMA)
        torch.save({"step": step, "optimizer": optimizer.state_dict(), "rng": rng_states, "skipped": skipped},
                   staging / STATE)
        (staging / RUN_CONFIG).write_text(OmegaConf.to_yaml(OmegaConf.structured(config)))
        if inputs:
            (staging / INPUTS).write_text(json.dumps(inputs, indent=2))

    replace_dir(build, folder)


def load_training(
    folder: Path, model: Generator, ema: Generator | None, optimizer: torch.optim.Optimizer
) -> tuple[int, list[torch.Tensor], int]:
    """Restore weights and optimizer from `folder`; return (step, per-rank RNG states, skipped steps)."""
    load_state(model, read_tensors(folder / WEIGHTS), str(folder / WEIGHTS))
    if ema is not None:
        load_state(ema, read_tensors(folder / EMA), str(folder / EMA))
    state = read_torch_file(folder / STATE)
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["rng"], state.get("skipped", 0)  # checkpoints before skip_nonfinite: 0
