"""Load the released AliTok tokenizer (`AliTok.pth`, github ali-vilab/alitok), naming look-alike files by their keys.

The file is a plain state dict without a config: `config_from_state` reads the sizes off the tensor shapes, so
smaller AliToks (tests, fine-tunes) load the same way as the release.
"""
from __future__ import annotations

import math
import re
from pathlib import Path

import torch

from rear.weights import read_state_dict, strip_prefixes
from rear.tokenizer.alitok import AliTok, AliTokConfig, TransformerSize
from rear.weights import check_tensor

ALITOK_KEY = "encoder.transformer.0.attn.in_proj.weight"  # TiTok's nn.MultiheadAttention names it in_proj_weight
# a key only that kind of file holds -> what the file looks like
LOOK_ALIKES = {
    "decoder.ffn_aux.0.weight": "AliTok stage-1 tokenizer (causal decoder); the released AliTok.pth is stage 2",
    "decoder.mask_token": "TiTok tokenizer (bytedance/1d-tokenizer)",
    "encoder.conv_in.weight": "MaskGIT-VQGAN tokenizer",
    "output.weight": "AliTok AR generator (modeling/ar.py; open it with load_alitok_generator), not its tokenizer",
    "lm_head.weight": "RAR/reAR generator, not a tokenizer",
}
# the tensors whose shapes give the sizes -> their number of dimensions
SIZE_KEYS = {"latent_tokens": 2, "encoder.positional_embedding": 2, "encoder.patch_embed.weight": 4,
             "decoder.decoder_embed.weight": 2, "decoder.class_embedding": 2, "quantize.embedding.weight": 2}
HEAD_WIDTH = 64  # the release's: 768 -> 12 heads, 1024 -> 16


def heads_for_width(width: int) -> int:
    """Heads of a stack `width` wide: not in the shapes, so the release's 64-wide heads (one head under 64)."""
    return max(1, width // HEAD_WIDTH)


def check_look_alikes(state: dict[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming what `state` looks like when it holds a key only another kind of file holds."""
    for key, kind in LOOK_ALIKES.items():
        if key in state:
            raise ValueError(f"{source} looks like a {kind}; load_alitok takes AliTok.pth")


def config_from_state(state: dict[str, torch.Tensor], source: str) -> AliTokConfig:
    """AliTokConfig read off the tensor shapes; heads from `heads_for_width`, depths by counting blocks."""
    missing = [name for name in SIZE_KEYS if name not in state]
    if missing:
        raise ValueError(f"{source} is missing {len(missing)} AliTok keys, e.g. {missing[:3]}; is the file complete?")
    for name, dims in SIZE_KEYS.items():
        if state[name].dim() != dims:
            raise ValueError(f"{source}: {name} has shape {tuple(state[name].shape)}, AliTok's is {dims}-D")
    tokens, encoder_width = state["latent_tokens"].shape  # [N, D_enc]
    cells = state["encoder.positional_embedding"].shape[0]  # G * G
    grid = math.isqrt(cells)
    if grid * grid != cells or cells > tokens:
        raise ValueError(f"{source}: encoder.positional_embedding has {cells} rows, not a square patch grid of at "
                         f"most the {tokens} latent tokens; is it AliTok.pth?")
    codebook_size, code_dim = state["quantize.embedding.weight"].shape
    decoder_width = state["decoder.decoder_embed.weight"].shape[0]  # [D_dec, Z]
    try:
        return AliTokConfig(
            encoder=TransformerSize(encoder_width, _count_blocks(state, "encoder"), heads_for_width(encoder_width)),
            decoder=TransformerSize(decoder_width, _count_blocks(state, "decoder"), heads_for_width(decoder_width)),
            patch_size=state["encoder.patch_embed.weight"].shape[-1], grid_size=grid, prefix_tokens=tokens - cells,
            codebook_size=codebook_size, code_dim=code_dim, class_rows=state["decoder.class_embedding"].shape[0])
    except ValueError as error:
        raise ValueError(f"{source}: {error}") from None


def _count_blocks(state: dict[str, torch.Tensor], stack: str) -> int:
    """Blocks of `stack` counted by their attention weights (a stray key of a block beyond them stays extra)."""
    block = re.compile(rf"{stack}\.transformer\.\d+\.attn\.in_proj\.weight")
    return sum(1 for name in state if block.fullmatch(name))


def check_alitok_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming the first key of `state` missing, extra or misshapen against `expected`."""
    missing = [name for name in expected if name not in state]
    if missing:
        raise ValueError(f"{source} is missing {len(missing)} AliTok keys, e.g. {missing[:3]}; is the file complete?")
    extra = [name for name in state if name not in expected]
    if extra:
        raise ValueError(f"{source} has {len(extra)} keys AliTok lacks, e.g. {extra[:3]}; is it AliTok.pth?")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ValueError(f"{source}: {name} has shape {tuple(state[name].shape)}, but the sizes read off the "
                             f"other tensors give {tuple(tensor.shape)}")
        check_tensor(state[name], tensor.dtype, name, source)


def alitok_from_state(state: dict[str, torch.Tensor], source: str, device: str | torch.device = "cpu") -> AliTok:
    """AliTok holding `state` (the released layout, or a training checkpoint's `model_state`), frozen, eval mode."""
    if isinstance(state.get("model_state"), dict):  # the training script's checkpoints wrap the weights
        state = state["model_state"]
    state = strip_prefixes(state)
    check_look_alikes(state, source)
    config = config_from_state(state, source)
    with torch.device("meta"):  # no memory or init time spent on weights about to be replaced
        model = AliTok(config)
    check_alitok_state(state, model.state_dict(), source)
    model.load_state_dict(state, assign=True)
    return model.to(device, torch.float32).eval().requires_grad_(False)


def load_alitok(path: str | Path, device: str | torch.device = "cpu") -> AliTok:
    """AliTok from `AliTok.pth` (a plain state dict, read with weights_only=True) or a training `vae_step_*.pth`."""
    return alitok_from_state(read_state_dict(path), str(path), device)
