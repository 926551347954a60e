"""Model-agnostic weight files: strict state loading, fingerprints, and atomic folder swaps.

Every saved model (generator, tokenizer, classifier, training checkpoint) is a folder that
`replace_dir` swaps in whole. The swap is two renames (target -> .target.old, staging -> target);
a process killed between them leaves only `.target.old`, which `recover_dir` (called before any
save, and by the trainer before it looks for a checkpoint) puts back.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from rear.errors import first_line

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
        check_tensor(tensor, expected[name].dtype, name, source)
    model.load_state_dict(state)


def write_weights(module: torch.nn.Module, path: str | Path) -> None:
    """The module's state dict as safetensors (detached, contiguous, on the CPU): every saved model's
    weights go through here."""
    save_file({k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}, str(path))


def check_tensor(tensor: torch.Tensor, want: torch.dtype, name: str, source: str) -> None:
    """Refuse a weight that would load silently wrong: an integer or boolean tensor where the model
    holds floats (it would be cast), or a float tensor with NaN or Inf in it."""
    if want.is_floating_point and not tensor.dtype.is_floating_point:
        raise ValueError(f"{source}: tensor {name!r} is {tensor.dtype}, not floating point; these are not the "
                         "weights of this model (or they were quantized): use the original file")
    if tensor.dtype.is_floating_point and not torch.isfinite(tensor).all():
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{source}: tensor {name!r} holds {bad} NaN or Inf value(s); the file is damaged or "
                         "comes from a run that diverged: use another checkpoint")


def state_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names, shapes and bytes."""
    digest = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode())
        digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _old(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_dir(target: str | Path) -> Path:
    """Undo a swap cut short: restore `.target.old` when `target` is missing, and delete the staging
    folders (`.target.*`) that killed saves left behind. Returns `target`."""
    target = Path(target)
    old = _old(target)
    if not target.exists() and old.is_dir():
        os.replace(old, target)
    if target.parent.is_dir():
        for leftover in target.parent.glob(f".{target.name}.*"):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
    return target


def replace_dir(build: Callable[[Path], None], target: str | Path) -> None:
    """Fill a fresh sibling folder with `build(folder)`, then swap it in for `target` by renames."""
    target = recover_dir(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        build(staging)
        old = _old(target)
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)  # a kill before this line leaves .old, which recover_dir restores
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def replace_file(path: str | Path, text: str) -> None:
    """Write `text` to `path` through a sibling `.tmp` file and one rename: a reader never sees half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """A safetensors file; a truncated or foreign file is a ValueError naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return load_file(path)
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError, ValueError)
        raise ValueError(f"{path} is not a readable safetensors file ({first_line(error)}); it may be "
                         "truncated: write it again or point to another file") from None


def read_torch_file(path: str | Path) -> Any:
    """Tensors and plain values from a torch.save file, never unpickling code (weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # truncated zip, foreign pickle, code objects refused by weights_only
        raise ValueError(f"{path} cannot be read as tensors without running pickled code "
                         f"({first_line(error)}); it may be truncated or not a weights file") from None


WRAPPER_PREFIXES = ("module.", "_orig_mod.")  # DDP and torch.compile wrappers


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a `.safetensors` file or a plain state dict (read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        return read_tensors(path)
    state = read_torch_file(path)  # pickles of arbitrary objects are refused on purpose
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, expected a state dict")
    return state


def strip_prefixes(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop DDP / torch.compile wrapper prefixes from every key."""
    cleaned = {}
    for name, tensor in state.items():
        for prefix in WRAPPER_PREFIXES:
            name = name.removeprefix(prefix)
        cleaned[name] = tensor
    return cleaned


def weights_file(path: Path) -> Path:
    """`path` itself, or the model.safetensors inside it where it is a folder."""
    return path / WEIGHTS if path.is_dir() else path


def tensor_names(path: Path) -> set[str]:
    """The tensor names of a .safetensors or torch file, reading only its header or pickled index."""
    try:
        if path.suffix == ".safetensors":
            with safe_open(path, "pt") as file:
                return set(file.keys())
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        for wrapper in ("state_dict", "model_state"):  # training checkpoints wrap the weights
            if isinstance(state.get(wrapper), dict):
                state = state[wrapper]
        return {name.removeprefix("module.") for name in state}
    except Exception:  # unreadable, or a torch file too old to map: read_state_dict names the problem
        return set(read_state_dict(path))
