"""The peers our benchmarks compare against, imported from checkouts given at run time (never copied).

- the official reAR release (github QY-H00/reAR): its `modeling/rear.py` model, with its KV-cache
  sampler repaired (the release keeps the causal mask on cached one-token steps, which crashes at the
  second step; its own commented-out `attn_mask = None` is the repair), and its `ARLoss`;
- LlamaGen (github FoundationVision/LlamaGen): its class-conditional GPT and gpt-fast-style
  static-cache sampler (`autoregressive/models/gpt.py`, `generate.py`).

Only the files named are loaded, by path; the packages they would import for other models are
replaced by the few names these files use (docs/method.md, 10).
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch
from torch import nn

from rear.generator import Generator


def load_file(name: str, path: Path) -> types.ModuleType:
    """Import one source file as module `name`."""
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass the root of the checkout")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def stub(name: str, **attributes) -> None:
    """Register module `name` (and its parents) holding `attributes`, unless it imports for real."""
    try:
        importlib.import_module(name)
        return
    except (ImportError, RuntimeError):  # absent, or present but broken (timm beside a mismatched torchvision)
        pass
    parts = name.split(".")
    for i in range(1, len(parts) + 1):
        sys.modules.setdefault(".".join(parts[:i]), types.ModuleType(".".join(parts[:i])))
    for key, value in attributes.items():
        setattr(sys.modules[name], key, value)


class TwoLayerMlp(nn.Module):
    """fc1 -> activation -> fc2 with dropout, timm's `Mlp` signature and parameter names (used where
    timm is not installed: it pulls in torchvision)."""

    def __init__(self, in_features, hidden_features, act_layer=nn.GELU, drop=0.0, **_):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(in_features, hidden_features), act_layer(), nn.Linear(hidden_features, in_features)
        self.drop1, self.drop2 = nn.Dropout(drop), nn.Dropout(drop)

    def forward(self, x):
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


# ------------------------------------------------------------------ the official reAR release
def official_module(root: str | Path) -> types.ModuleType:
    """`modeling/rear.py` of a reAR checkout, its blocks uncompiled and its cached sampler repaired."""
    root = Path(root)
    stub("timm.layers", Mlp=TwoLayerMlp)
    base = load_file("official_base_model", root / "modeling/modules/base_model.py")
    sys.modules["modeling"] = types.ModuleType("modeling")
    sys.modules["modeling.modules"] = types.ModuleType("modeling.modules")
    sys.modules["modeling.modules"].BaseModel = base.BaseModel
    module = load_file("official_rear", root / "modeling/rear.py")
    # its Block.forward carries @torch.compile: run the plain function, as on a CPU with TORCHDYNAMO_DISABLE=1
    module.Block.forward = getattr(module.Block.forward, "_torchdynamo_orig_callable", module.Block.forward)
    forward = module.Attention.forward

    def repaired(self, x, attn_mask=None):
        if self.kv_cache and self.k_cache is not None:
            attn_mask = None  # one new query attends every cached key: the line the release commented out
        return forward(self, x, attn_mask=attn_mask)

    module.Attention.forward = repaired
    return module


def official_losses(root: str | Path) -> types.ModuleType:
    return load_file("official_losses", Path(root) / "modeling/modules/losses.py")


def official_config(model: Generator, noise: bool = False):
    """The release's OmegaConf config for the size of our `model` (a RAR backbone)."""
    from omegaconf import OmegaConf

    c = model.config
    return OmegaConf.create({"model": {
        "vq_model": {"codebook_size": c.codebook_size, "token_size": c.align.code_dim},
        "generator": {
            "hidden_size": c.width, "num_hidden_layers": c.depth, "num_attention_heads": c.heads,
            "intermediate_size": int(c.width * c.mlp_ratio), "dropout": c.dropout, "attn_drop": c.attn_dropout,
            "image_seq_len": c.num_tokens, "condition_num_classes": c.num_classes,
            "transition_alignment": c.align.enabled, "encode_align": c.align.encode, "decode_align": c.align.decode,
            "projection_dim": c.align.projection_dim, "z_dim": c.align.code_dim,
            "encode_align_layer_idx": c.align.encode_layer, "decode_align_layer_idx": c.align.decode_layer,
            "perturb_mode": "switch" if noise else "none",
        }}})


def official_model(root: str | Path, model: Generator, noise: bool = False) -> nn.Module:
    """The release's model holding our `model`'s weights (its position tables are longer: padded)."""
    official = official_module(root).reAR(official_config(model, noise))
    state = official.state_dict()
    for name, value in model.state_dict().items():
        target = state[name]
        if target.shape == value.shape:
            state[name] = value
        else:  # pos_embed, target_aware_pos_embed, timesteps_embeddings: [1, N + extra, D]
            state[name] = torch.cat([value, target[:, value.shape[1]:]], dim=1)
    official.load_state_dict(state)
    return official.to(next(model.parameters()))


def official_sample(official: nn.Module, labels: torch.Tensor, cfg_scale: float, cfg_power: float) -> torch.Tensor:
    return official.generate(labels, guidance_scale=cfg_scale, randomize_temperature=1.0,
                             guidance_scale_pow=cfg_power, kv_cache=True)


# ------------------------------------------------------------------ LlamaGen
def llamagen_modules(root: str | Path) -> tuple[types.ModuleType, types.ModuleType]:
    """(gpt, generate) of a LlamaGen checkout."""
    root = Path(root) / "autoregressive/models"

    class DropPath(nn.Identity):  # stochastic depth; the sampler runs with rate 0
        def __init__(self, *_, **__):
            super().__init__()

    stub("utils.drop_path", DropPath=DropPath)
    return load_file("llamagen_gpt", root / "gpt.py"), load_file("llamagen_generate", root / "generate.py")


def llamagen_model(root: str | Path, width: int, depth: int, heads: int, tokens: int, codes: int,
                   classes: int) -> tuple[nn.Module, types.ModuleType]:
    """LlamaGen's class-conditional GPT at this size (random weights: every one, so no block is an
    identity), and its generate module."""
    gpt, generate = llamagen_modules(root)
    model = gpt.Transformer(gpt.ModelArgs(dim=width, n_layer=depth, n_head=heads, vocab_size=codes,
                                          num_classes=classes, block_size=tokens, cls_token_num=1))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model, generate


def llamagen_flops_per_image(model: nn.Module, guided: bool) -> float:
    """Nominal forward FLOPs of LlamaGen's cached sampler for one image (its own layer sizes)."""
    a = model.config
    D = a.dim
    hidden = model.layers[0].feed_forward.w1.out_features
    per_token = a.n_layer * 2 * (3 * D * D + D * D + 3 * D * hidden) + 2 * D * a.vocab_size
    fed = a.block_size  # the class token, t_0 .. t_{N-2}
    attention = sum(a.n_layer * 4 * (p + 1) * D for p in range(fed))
    return (2 if guided else 1) * (fed * per_token + attention)


def llamagen_sample(model: nn.Module, generate: types.ModuleType, labels: torch.Tensor, tokens: int,
                    cfg_scale: float) -> torch.Tensor:
    return generate.generate(model, labels, tokens, cfg_scale=cfg_scale, temperature=1.0, top_k=0, top_p=1.0,
                             sample_logits=True)

