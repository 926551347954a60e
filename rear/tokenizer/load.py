"""Open a tokenizer by what is on disk: a rear tokenizer folder, or a released state dict (MaskGIT-VQGAN
.bin, TiTok, AliTok.pth)."""
from __future__ import annotations

from pathlib import Path

import torch

from rear.weights import WEIGHTS, read_tensors
from rear.tokenizer.base import VQTokenizer
from rear.weights import state_fingerprint

CODEBOOK = "quantize.embedding.weight"


def read_tokenizer_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a tokenizer folder (model.safetensors) or of a MaskGIT-VQGAN .bin file."""
    from rear.compat.official import read_state_dict

    path = Path(path)
    if path.is_dir():
        if not (path / WEIGHTS).is_file():
            raise FileNotFoundError(f"{path} has no {WEIGHTS}; train one with `rear tokenizer train`")
        return read_tensors(path / WEIGHTS)
    return read_state_dict(path)


def read_codebook(path: str | Path) -> tuple[torch.Tensor, str]:
    """(codebook vectors [K, Z], weights fingerprint) without building the tokenizer.

    The rows are as stored: TiTok embeds unit-length rows, but the alignment targets are compared by
    cosine, which a row's length does not change."""
    state = read_tokenizer_state(path)
    if CODEBOOK not in state:
        raise ValueError(f"{path} has no {CODEBOOK}; is it a VQ tokenizer?")
    return state[CODEBOOK].float(), state_fingerprint(state)


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> VQTokenizer:
    """A folder made by `rear tokenizer train`, `maskgit-vqgan-imagenet-f16-256.bin`, a released TiTok,
    or `AliTok.pth`, told apart by their tensor names."""
    from rear.compat.alitok import ALITOK_KEY, load_alitok
    from rear.compat.titok import is_titok, load_titok, tensor_names

    path = Path(path)
    if is_titok(path):  # its HF folder, that folder's model.safetensors, or the .bin
        return load_titok(path, device)
    if path.is_dir():
        from rear.tokenizer.conv_vq import load_conv_vq

        return load_conv_vq(path).to(device).eval()
    if path.is_file() and ALITOK_KEY in tensor_names(path):  # names only: the 1.5 GB file is read once
        return load_alitok(path, device)
    from rear.tokenizer.maskgit import load_maskgit_vqgan

    return load_maskgit_vqgan(path, device)
