"""Open a tokenizer by what is on disk: a rear tokenizer folder, or a released state dict (MaskGIT-VQGAN
.bin, TiTok, AliTok.pth)."""
from __future__ import annotations

from pathlib import Path

import torch

from rear.tokenizer.base import VQTokenizer

MASKGIT_KEY = "encoder.conv_in.weight"  # a tensor of the MaskGIT-VQGAN state dict (and of no other file here)


def read_codebook(path: str | Path) -> tuple[torch.Tensor, str]:
    """(codebook vectors [K, Z] as the tokenizer's `embed` gives them, its weights fingerprint).

    Built through the tokenizer itself, so the fingerprint is the one `pretokenize` wrote into a
    store whatever the file's dtype or key prefixes, and TiTok's rows come unit-length as it embeds them."""
    tokenizer = load_tokenizer(path)
    with torch.no_grad():
        codebook = tokenizer.embed(torch.arange(tokenizer.codebook_size)[None])[0].float()  # [K, Z]
    return codebook, tokenizer.fingerprint()


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
    names = tensor_names(path)  # names only (header / mmap): a 1.5 GB file is read once
    if ALITOK_KEY in names:
        return load_alitok(path, device)
    if MASKGIT_KEY in names:
        from rear.tokenizer.maskgit import load_maskgit_vqgan

        return load_maskgit_vqgan(path, device)
    raise ValueError(f"{path} is not a tokenizer rear knows (a `rear tokenizer train` folder, the MaskGIT-VQGAN "
                     ".bin, a TiTok, AliTok.pth); a generator checkpoint is not a tokenizer")
