"""Load the released TiTok tokenizers (bytedance/1d-tokenizer): an HF folder or the pickled .bin.

The HF release is a folder of `model.safetensors` and the `config.json` that its PyTorchModelHubMixin
wrote (the training YAML as JSON: model.vq_model.*, dataset.preprocessing.crop_size). The .bin is a
plain state dict without a config, so its sizes are read off the tensor shapes.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from rear.tokenizer.titok import VIT_SIZES, TiTok, TiTokConfig, ViTSize
from rear.weights import CONFIG, load_state, read_state_dict, weights_file

SIGNATURE = ("latent_tokens", "pixel_decoder.conv_in.weight")  # keys every legacy TiTok holds
LOOKALIKES = (  # (a key that kind of file holds, what the file then looks like), first match wins
    ("encoder.transformer.0.attn.in_proj.weight", "an AliTok tokenizer (attention in_proj.*, no pixel decoder)"),
    ("latent_tokens", "a TiTok without the MaskGIT-VQGAN pixel decoder (stage 1 or non-legacy); only the "
                      "legacy two-stage TiTok (b64, l32, s128) is supported"),
    ("encoder.conv_in.weight", "a MaskGIT-VQGAN tokenizer; open it with load_maskgit_vqgan"),
    ("lm_head.weight", "a generator, not a tokenizer"),
)
SHAPE_KEYS = ("encoder.positional_embedding", "decoder.positional_embedding", "encoder.patch_embed.weight",
              "quantize.embedding.weight")  # what config_from_state reads, besides latent_tokens


def check_titok_state(state: dict[str, torch.Tensor], source: Path) -> None:
    """Raise ValueError naming what the file looks like unless it is a legacy TiTok state dict."""
    if set(SIGNATURE) <= set(state):
        return
    looks = next((f"it looks like {kind}" for key, kind in LOOKALIKES if key in state), "it has no latent_tokens")
    raise ValueError(f"{source} is not a TiTok checkpoint: {looks}")


def config_from_json(path: Path) -> TiTokConfig:
    """TiTokConfig from the release's config.json (the training YAML written as JSON)."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; pass the HF folder that holds model.safetensors and config.json")
    try:
        raw = json.loads(path.read_text())
        vq, crop = raw["model"]["vq_model"], raw["dataset"]["preprocessing"]["crop_size"]
        # the release's defaults for keys its legacy configs leave out
        legacy = vq.get("is_legacy", True) and vq.get("finetune_decoder", True) \
            and vq.get("quantize_mode", "vq") == "vq"
        if not (legacy and vq["use_l2_norm"]) or vq["vit_enc_patch_size"] != vq["vit_dec_patch_size"]:
            raise ValueError(f"{path} describes a TiTok variant other than the legacy two-stage VQ one "
                             "(b64, l32, s128); only that one is supported")
        return TiTokConfig(
            encoder=_size_named(vq["vit_enc_model_size"], path), decoder=_size_named(vq["vit_dec_model_size"], path),
            num_tokens=int(vq["num_latent_tokens"]), codebook_size=int(vq["codebook_size"]),
            code_dim=int(vq["token_size"]), image_size=int(crop), patch_size=int(vq["vit_enc_patch_size"]))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from None
    except (KeyError, TypeError) as error:
        raise ValueError(f"{path} is not a TiTok config.json (model.vq_model, dataset.preprocessing): "
                         f"missing {error}") from None


def config_from_state(state: dict[str, torch.Tensor], source: Path) -> TiTokConfig:
    """TiTokConfig read off the tensor shapes (widths pick the ViT sizes: heads are not in the shapes)."""
    missing = [name for name in SHAPE_KEYS if name not in state]
    if missing:
        raise ValueError(f"{source} lacks {missing}; is it a complete TiTok state dict?")
    positions, width = state["encoder.positional_embedding"].shape  # [G*G + 1, D]
    codebook_size, code_dim = state["quantize.embedding.weight"].shape
    patch = state["encoder.patch_embed.weight"].shape[-1]
    return TiTokConfig(
        encoder=_size_of_width(width, source),
        decoder=_size_of_width(state["decoder.positional_embedding"].shape[1], source),
        num_tokens=state["latent_tokens"].shape[0], codebook_size=codebook_size, code_dim=code_dim,
        image_size=math.isqrt(positions - 1) * patch, patch_size=patch)


def _size_named(name: str, source: Path) -> ViTSize:
    if name not in VIT_SIZES:
        raise ValueError(f"{source}: unknown TiTok ViT size {name!r}; expected one of {sorted(VIT_SIZES)}")
    return VIT_SIZES[name]


def _size_of_width(width: int, source: Path) -> ViTSize:
    sizes = [size for size in VIT_SIZES.values() if size.width == width]
    if not sizes:
        raise ValueError(f"{source}: ViT width {width} matches no TiTok size {VIT_SIZES}")
    return sizes[0]


def load_titok(path: str | Path, device: str | torch.device = "cpu") -> TiTok:
    """A released TiTok: its HF folder, that folder's model.safetensors, or the pickled .bin state dict."""
    weights = weights_file(Path(path))
    state = read_state_dict(weights)
    check_titok_state(state, weights)
    if weights.suffix == ".safetensors":
        config = config_from_json(weights.parent / CONFIG)
    else:
        config = config_from_state(state, weights)
    model = TiTok(config)
    load_state(model, state, str(weights))
    return model.to(device).eval().requires_grad_(False)
