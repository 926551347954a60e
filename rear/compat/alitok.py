"""Load the released AliTok tokenizer (`AliTok.pth`, github ali-vilab/alitok), naming look-alike files by their keys."""
from __future__ import annotations

from pathlib import Path

import torch

from rear.compat.official import read_state_dict, strip_prefixes
from rear.tokenizer.alitok import AliTok

ALITOK_KEY = "encoder.transformer.0.attn.in_proj.weight"  # TiTok's nn.MultiheadAttention names it in_proj_weight
# a key only that kind of file holds -> what the file looks like
LOOK_ALIKES = {
    "decoder.ffn_aux.0.weight": "AliTok stage-1 tokenizer (causal decoder); the released AliTok.pth is stage 2",
    "decoder.mask_token": "TiTok tokenizer (bytedance/1d-tokenizer)",
    "encoder.conv_in.weight": "MaskGIT-VQGAN tokenizer",
    "output.weight": "AliTok AR generator (modeling/ar.py; open it with load_alitok_generator), not its tokenizer",
    "lm_head.weight": "RAR/reAR generator, not a tokenizer",
}


def check_alitok_state(state: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    """Raise ValueError naming what `state` looks like, or its first missing, extra or misshapen key."""
    for key, kind in LOOK_ALIKES.items():
        if key in state:
            raise ValueError(f"{source} looks like a {kind}; load_alitok takes AliTok.pth")
    missing = [name for name in expected if name not in state]
    if missing:
        raise ValueError(f"{source} is missing {len(missing)} AliTok keys, e.g. {missing[:3]}; is the file complete?")
    extra = [name for name in state if name not in expected]
    if extra:
        raise ValueError(f"{source} has {len(extra)} keys AliTok lacks, e.g. {extra[:3]}; is it AliTok.pth?")
    for name, tensor in expected.items():
        if state[name].shape != tensor.shape:
            raise ValueError(
                f"{source}: {name} has shape {tuple(state[name].shape)}, AliTok has {tuple(tensor.shape)}"
            )


def alitok_from_state(state: dict[str, torch.Tensor], source: str, device: str | torch.device = "cpu") -> AliTok:
    """AliTok holding `state` (the released layout, or a training checkpoint's `model_state`), frozen, eval mode."""
    if isinstance(state.get("model_state"), dict):  # the training script's checkpoints wrap the weights
        state = state["model_state"]
    state = strip_prefixes(state)
    with torch.device("meta"):  # no memory or init time spent on weights about to be replaced
        model = AliTok()
    check_alitok_state(state, model.state_dict(), source)
    model.load_state_dict(state, assign=True)
    return model.to(device, torch.float32).eval().requires_grad_(False)


def load_alitok(path: str | Path, device: str | torch.device = "cpu") -> AliTok:
    """AliTok from `AliTok.pth` (a plain state dict, read with weights_only=True) or a training `vae_step_*.pth`."""
    return alitok_from_state(read_state_dict(path), str(path), device)
