"""Open a tokenizer by what is on disk: a rear tokenizer folder, or a released state dict (MaskGIT-VQGAN
.bin, TiTok, AliTok.pth)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from rear.hub import CardInfo, read_card_info, resolve
from rear.tokenizer.base import VQTokenizer

METRICS = "metrics.json"  # what `rear tokenizer train` measured, beside the weights
MASKGIT_KEY = "encoder.conv_in.weight"  # a tensor of the MaskGIT-VQGAN state dict (and of no other file here)


def read_codebook(path: str | Path) -> tuple[torch.Tensor, str]:
    """(codebook vectors [K, Z] as the tokenizer's `embed` gives them, its weights fingerprint).

    Built through the tokenizer itself, so the fingerprint is the one `pretokenize` wrote into a
    store whatever the file's dtype or key prefixes, and TiTok's rows come unit-length as it embeds them."""
    tokenizer = load_tokenizer(path)
    with torch.no_grad():
        codebook = tokenizer.embed(torch.arange(tokenizer.codebook_size)[None])[0].float()  # [K, Z]
    return codebook, tokenizer.fingerprint()


def card_info(folder: Path) -> CardInfo:
    """What a tokenizer folder records of its making: card.json (save_pretrained), updated by the
    metrics.json of `rear tokenizer train` where there is one (its training config as the training record;
    what was measured after training, such as the ceiling, is added to metrics.json only)."""
    info = read_card_info(folder)
    metrics = folder / METRICS
    if metrics.is_file():
        data = json.loads(metrics.read_text())
        config = data.pop("config", None)
        info = CardInfo(info.training if info.training is not None else {"config": config},
                        {**(info.metrics or {}), **data})
    return info


def load_tokenizer(path: str | Path, device: str | torch.device = "cpu") -> VQTokenizer:
    """A folder made by `rear tokenizer train` or `save_pretrained`, `maskgit-vqgan-imagenet-f16-256.bin`, a
    released TiTok (folder or .bin) or `AliTok.pth`, told apart by their tensor names; a Hugging Face repo
    id is downloaded first. A folder's recorded training and metrics come along (`card_info`)."""
    path = resolve(path)
    tokenizer = _load(path, device)
    if path.is_dir():
        tokenizer.card_info = card_info(path)
    return tokenizer


def _load(path: Path, device: str | torch.device) -> VQTokenizer:
    from rear.compat.alitok import ALITOK_KEY, load_alitok
    from rear.compat.titok import SIGNATURE as TITOK_KEYS, load_titok
    from rear.weights import WEIGHTS, tensor_names

    weights = path / WEIGHTS if path.is_dir() else path
    if path.is_dir() and not weights.is_file():
        raise FileNotFoundError(f"{path} has no {WEIGHTS}; a tokenizer folder comes from `rear tokenizer train` "
                                "or save_pretrained")
    names = tensor_names(weights)  # names only (header / mmap): a 1.5 GB file is read once
    if set(TITOK_KEYS) <= names:
        return load_titok(path, device)
    if ALITOK_KEY in names:
        return load_alitok(weights, device)
    if MASKGIT_KEY in names:
        from rear.tokenizer.maskgit import load_maskgit_vqgan

        return load_maskgit_vqgan(weights, device)
    if path.is_dir():
        from rear.tokenizer.conv_vq import load_conv_vq

        return load_conv_vq(path).to(device).eval()
    raise ValueError(f"{path} is not a tokenizer rear knows (a `rear tokenizer train` folder, the MaskGIT-VQGAN "
                     ".bin, a TiTok, AliTok.pth); a generator checkpoint is not a tokenizer")
