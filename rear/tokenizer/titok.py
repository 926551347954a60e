"""TiTok (bytedance/1d-tokenizer, legacy two-stage VQ layout): 256x256 RGB <-> 64 ids of 4096 codes.

Encoder: a ViT reads [cls, 16x16 patches, N learned latent tokens]; the N latent outputs, read in the
release's legacy memory layout, are projected to Z = 12 dims and matched against a 4096 x 12 codebook,
both sides L2-normalised (docs/method.md, 11). Decoder: a ViT reads [cls, 16x16 mask tokens, N
latents] and predicts 1024 logits per cell; their softmax weights the MaskGIT-VQGAN codebook, and the
MaskGIT-VQGAN pixel decoder turns those soft latents into pixels. Module names equal the release's
state-dict keys, so loading a released checkpoint (rear.compat.titok) is a key copy.
Shapes: B batch, N latent tokens, D width, L sequence, G x G patch grid, K codes, Z code dim.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rear.tokenizer import maskgit
from rear.tokenizer.base import Codebook, VQTokenizer

PIXEL_CODES = 1024  # the MaskGIT-VQGAN codebook the decoder's logits weight


@dataclass(frozen=True)
class ViTSize:
    """Width, depth and heads of one TiTok ViT (MLP ratio 4)."""

    width: int
    depth: int
    heads: int


VIT_SIZES = {"small": ViTSize(512, 8, 8), "base": ViTSize(768, 12, 12), "large": ViTSize(1024, 24, 16)}


@dataclass(frozen=True)
class TiTokConfig:
    """Sizes of a legacy TiTok; the defaults are TiTok-b64 (l32: large, 32 tokens; s128: small, 128)."""

    encoder: ViTSize = VIT_SIZES["base"]
    decoder: ViTSize = VIT_SIZES["base"]
    num_tokens: int = 64  # N
    codebook_size: int = 4096  # K
    code_dim: int = 12  # Z
    image_size: int = 256
    patch_size: int = 16

    @property
    def grid_size(self) -> int:
        return self.image_size // self.patch_size  # G; 16 feeds the f16 pixel decoder 256x256 images


class Block(nn.Module):
    """Pre-LN block on a sequence-first x [L, B, D]: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads)  # sequence-first, like the release
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=nn.GELU(), c_proj=nn.Linear(4 * width, width)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.ln_1(x)  # [L, B, D]
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class ViT(nn.Module):
    """What encoder and decoder share: cls and position tables, ln_pre, the blocks, ln_post."""

    def __init__(self, size: ViTSize, config: TiTokConfig) -> None:
        super().__init__()
        D, G = size.width, config.grid_size
        self.grid_size = G
        self.class_embedding = nn.Parameter(torch.zeros(1, D))
        self.positional_embedding = nn.Parameter(torch.zeros(G * G + 1, D))  # cls + grid cells
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(config.num_tokens, D))
        self.ln_pre = nn.LayerNorm(D)
        self.transformer = nn.ModuleList(Block(D, size.heads) for _ in range(size.depth))
        self.ln_post = nn.LayerNorm(D)

    def run(self, x: torch.Tensor) -> torch.Tensor:
        """ln_pre then the blocks, batch-first in and out: [B, L, D] -> [B, L, D]."""
        x = self.ln_pre(x).transpose(0, 1)  # [L, B, D]
        for block in self.transformer:
            x = block(x)
        return x.transpose(0, 1)


class Encoder(ViT):
    """Images [B, 3, H, W] and latent tokens [N, D] -> unnormalised latents [B, Z, 1, N]."""

    def __init__(self, config: TiTokConfig) -> None:
        super().__init__(config.encoder, config)
        D, p = config.encoder.width, config.patch_size
        self.patch_embed = nn.Conv2d(3, D, p, stride=p)
        self.conv_out = nn.Conv2d(D, config.code_dim, 1)

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        B, (N, D) = images.shape[0], latent_tokens.shape
        patches = self.patch_embed(images).flatten(2).transpose(1, 2)  # [B, G*G, D]
        x = torch.cat([self.class_embedding.expand(B, 1, D), patches], 1) + self.positional_embedding  # [B, 1+G*G, D]
        latents = (latent_tokens + self.latent_token_positional_embedding).expand(B, N, D)  # [B, N, D]
        x = self.ln_post(self.run(torch.cat([x, latents], 1))[:, -N:])  # [B, N, D]
        # the legacy layout reads the [B, N, D] buffer as [B, D, N, 1]: a reshape, not a permute
        z = self.conv_out(x.reshape(B, D, N, 1))  # [B, Z, N, 1]
        return z.reshape(B, -1, 1, N)


class Decoder(ViT):
    """Quantized latents [B, Z, 1, N] -> logits over the MaskGIT-VQGAN codes [B, 1024, G, G]."""

    def __init__(self, config: TiTokConfig) -> None:
        super().__init__(config.decoder, config)
        D = config.decoder.width
        self.decoder_embed = nn.Linear(config.code_dim, D)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, D))
        self.ffn = nn.Sequential(nn.Conv2d(D, 2 * D, 1), nn.Tanh(), nn.Conv2d(2 * D, PIXEL_CODES, 1))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        B, Z, _, N = latents.shape
        G, D = self.grid_size, self.class_embedding.shape[1]
        x = self.decoder_embed(latents.reshape(B, Z, N).transpose(1, 2))  # [B, N, D]
        x = x + self.latent_token_positional_embedding
        queries = torch.cat([self.class_embedding.expand(B, 1, D), self.mask_token.expand(B, G * G, D)], 1)
        queries = queries + self.positional_embedding  # [B, 1+G*G, D]
        x = self.ln_post(self.run(torch.cat([queries, x], 1))[:, 1:1 + G * G])  # [B, G*G, D], cls dropped
        return self.ffn(x.transpose(1, 2).reshape(B, D, G, G))  # [B, 1024, G, G]


def release_config(config: TiTokConfig) -> dict:
    """The release's config.json for `config` (what config_from_json reads back; save_pretrained writes it)."""
    name = {size: name for name, size in VIT_SIZES.items()}
    vq = {"is_legacy": True, "finetune_decoder": True, "quantize_mode": "vq", "use_l2_norm": True,
          "vit_enc_model_size": name[config.encoder], "vit_dec_model_size": name[config.decoder],
          "vit_enc_patch_size": config.patch_size, "vit_dec_patch_size": config.patch_size,
          "num_latent_tokens": config.num_tokens, "codebook_size": config.codebook_size, "token_size": config.code_dim}
    return {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": config.image_size}}}


class TiTok(VQTokenizer):
    """Legacy TiTok: RGB images <-> N ids in a 1D grid (1, N); `embed` gives the unit-length code rows."""

    channels = 3

    def __init__(self, config: TiTokConfig = TiTokConfig()) -> None:
        super().__init__()
        self.config = config
        self.image_size, self.grid = config.image_size, (1, config.num_tokens)
        self.encoder = Encoder(config)
        self.latent_tokens = nn.Parameter(torch.zeros(config.num_tokens, config.encoder.width))
        self.quantize = Codebook(config.codebook_size, config.code_dim)
        self.decoder = Decoder(config)
        self.pixel_quantize = Codebook(PIXEL_CODES, maskgit.LATENT)
        self.pixel_decoder = maskgit.Decoder()

    def config_files(self) -> dict[str, str]:
        """The release's config.json: a saved folder reads back as the release's own would."""
        import json

        return {"config.json": json.dumps(release_config(self.config), indent=2)}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] in [0, 1] -> ids [B, N] of the nearest unit-length code."""
        self.check_images(images)
        z = self.encoder(images, self.latent_tokens)  # [B, Z, 1, N]
        B, Z = z.shape[:2]
        z = F.normalize(z.reshape(B, Z, -1).transpose(1, 2).reshape(-1, Z), dim=-1)  # [B*N, Z]
        codes = F.normalize(self.quantize.embedding.weight, dim=-1)  # [K, Z]
        # the release's expanded squared distance, term by term, so that near-ties break the same way
        distances = z.pow(2).sum(1, keepdim=True) + codes.pow(2).sum(1) - 2 * (z @ codes.T)  # [B*N, K]
        return distances.argmin(1).view(B, -1)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, N] -> unit-length codebook rows [B, N, Z] (what the decoder reads)."""
        return F.normalize(self.quantize.embedding(ids), dim=-1)

    def reconstruct(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, Z, 1, N] -> images [B, 3, H, W], unclamped (the release's `decode`; `decode` clamps)."""
        weights = self.decoder(latents).softmax(1)  # [B, 1024, G, G]
        soft = torch.einsum("bkhw,kz->bzhw", weights, self.pixel_quantize.embedding.weight)  # [B, 256, G, G]
        return self.pixel_decoder(soft)

