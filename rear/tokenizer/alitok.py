"""AliTok (ali-vilab/alitok): 256x256 RGB <-> 273 ids (17 prefix tokens, then 16x16 grid tokens), 4096 codes x 32.

Layout of the released `AliTok.pth` (the stage-2 model of `modeling/alitok.py`, a plain state dict); module
names equal its keys, so loading is a key copy (docs/method.md, 11).
- Encoder, ViT-B (768 x 12, 12 heads): [256 patch embeddings, 273 learned latent queries], each with its own
  positional table; the 273 query outputs are projected to 32 dims and take the nearest code (squared L2).
- Decoder, ViT-L (1024 x 24, 16 heads): [32 learned class rows, 273 code vectors] plus one positional table of
  305 rows; the last 256 outputs are the 16x16 image patches: 1x1 conv to 16*16*3 pixels, 1x1 conv 3 -> 3, sigmoid.
Both stacks are pre-LayerNorm (eps 1e-5) blocks with unmasked attention and a GELU MLP (4x). The paper's causal
decoder is stage 1 of training; the released stage-2 decoder is bidirectional. `AliTokConfig` holds these sizes
(its defaults) so smaller AliToks can be built; rear.compat.alitok reads them off a file's tensor shapes.
Shapes: B batch, N tokens, D width, G x G patch grid of p pixels, R class rows, K codes, Z code dim.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from rear.tokenizer.base import Codebook, VQTokenizer, nearest_codes


@dataclass(frozen=True)
class TransformerSize:
    """Width, depth and heads of one AliTok transformer stack (MLP ratio 4)."""

    width: int
    depth: int
    heads: int


@dataclass(frozen=True)
class AliTokConfig:
    """Sizes of an AliTok; the defaults are the release (AliTok.pth)."""

    encoder: TransformerSize = TransformerSize(768, 12, 12)  # ViT-B
    decoder: TransformerSize = TransformerSize(1024, 24, 16)  # ViT-L
    patch_size: int = 16  # p
    grid_size: int = 16  # G: a G x G patch grid, so G * p pixels a side
    prefix_tokens: int = 17  # tokens before the grid tokens
    codebook_size: int = 4096  # K
    code_dim: int = 32  # Z
    class_rows: int = 32  # learned rows in front of the decoder's sequence

    def __post_init__(self) -> None:
        for name, size in (("encoder", self.encoder), ("decoder", self.decoder)):
            if min(size.width, size.depth, size.heads) < 1 or size.width % size.heads:
                raise ValueError(f"AliTok {name} {size} needs width, depth, heads >= 1 and width divisible by heads")
        if min(self.patch_size, self.grid_size, self.codebook_size, self.code_dim) < 1 or self.prefix_tokens < 0:
            raise ValueError(f"AliTok sizes out of range: {self}")

    @property
    def image_size(self) -> int:
        return self.grid_size * self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.prefix_tokens + self.grid_size**2  # N = 273 in the release


class Attention(nn.Module):
    """Multi-head self-attention, every token sees every token; q|k|v come from one fused projection."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj = nn.Linear(width, 3 * width)
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        qkv = self.in_proj(x).view(B, N, 3, self.heads, -1).permute(2, 0, 3, 1, 4)  # [3, B, heads, N, D/heads]
        y = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # [B, heads, N, D/heads]
        return self.out_proj(y.transpose(1, 2).reshape(B, N, D))  # [B, N, D]


class MLP(nn.Module):
    """c_proj(gelu(c_fc(x))), hidden width 4 D, exact (erf) GELU."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.c_fc = nn.Linear(width, 4 * width)
        self.c_proj = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.c_proj(F.gelu(self.c_fc(x)))  # [B, N, D]


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln_1(x)), then + mlp(ln_2(x))."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(width), Attention(width, heads)
        self.ln_2, self.mlp = nn.LayerNorm(width), MLP(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x))  # [B, N, D]
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    """ln_pre, `depth` blocks, and an ln_post that subclasses apply to the outputs they keep."""

    def __init__(self, size: TransformerSize) -> None:
        super().__init__()
        self.ln_pre = nn.LayerNorm(size.width)
        self.transformer = nn.ModuleList(Block(size.width, size.heads) for _ in range(size.depth))
        self.ln_post = nn.LayerNorm(size.width)

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_pre(x)  # [B, N, D]
        for block in self.transformer:
            x = block(x)
        return x


class Encoder(Transformer):
    """images [B, 3, G*p, G*p] and latent queries [N, D] -> latents [B, Z, 1, N]."""

    def __init__(self, config: AliTokConfig) -> None:
        super().__init__(config.encoder)
        width, p, G = config.encoder.width, config.patch_size, config.grid_size
        self.patch_embed = nn.Conv2d(3, width, p, stride=p)
        self.positional_embedding = nn.Parameter(torch.zeros(G * G, width))
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(config.num_tokens, width))
        self.conv_out = nn.Conv2d(width, config.code_dim, 1)

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        B = images.shape[0]
        patches = self.patch_embed(images).flatten(2).transpose(1, 2) + self.positional_embedding  # [B, G*G, D]
        queries = (latent_tokens + self.latent_token_positional_embedding).expand(B, -1, -1)  # [B, N, D]
        x = self.blocks(torch.cat([patches, queries], 1))[:, patches.shape[1] :]  # [B, N, D]
        x = self.ln_post(x).transpose(1, 2).unsqueeze(2)  # [B, D, 1, N]: a permute, not TiTok's reshape
        return self.conv_out(x)  # [B, Z, 1, N]


class PatchesToPixels(nn.Module):
    """[B, p*p*3, h, w] -> [B, 3, h*p, w*p]; channels are ordered (row in patch, column in patch, colour)."""

    def __init__(self, patch: int) -> None:
        super().__init__()
        self.patch = patch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, _, h, w = x.shape
        p = self.patch
        x = x.view(B, p, p, 3, h, w).permute(0, 3, 4, 1, 5, 2)  # [B, 3, h, p, w, p]
        return x.reshape(B, 3, h * p, w * p)


class Decoder(Transformer):
    """latents [B, Z, 1, N] -> images [B, 3, G*p, G*p] in (0, 1)."""

    def __init__(self, config: AliTokConfig) -> None:
        super().__init__(config.decoder)
        width, p = config.decoder.width, config.patch_size
        self.grid_size = config.grid_size
        self.decoder_embed = nn.Linear(config.code_dim, width)
        self.class_embedding = nn.Parameter(torch.zeros(config.class_rows, width))
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(config.class_rows + config.num_tokens, width))
        # a Sequential so the conv's keys read ffn.0.*, as in the release
        self.ffn = nn.Sequential(nn.Conv2d(width, p * p * 3, 1), PatchesToPixels(p))
        self.conv_out = nn.Conv2d(3, 3, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        B, G = latents.shape[0], self.grid_size
        x = self.decoder_embed(latents.flatten(2).transpose(1, 2))  # [B, N, D]
        rows = self.class_embedding.expand(B, -1, -1)  # [B, R, D]
        x = torch.cat([rows, x], 1) + self.latent_token_positional_embedding  # [B, R + N, D]
        x = self.ln_post(self.blocks(x)[:, -G * G :])  # [B, G*G, D]: the grid outputs, raster order
        x = x.transpose(1, 2).reshape(B, -1, G, G)  # [B, D, G, G]
        return torch.sigmoid(self.conv_out(self.ffn(x)))  # [B, 3, G*p, G*p]


class AliTok(VQTokenizer):
    """The AliTok tokenizer: RGB images in [0, 1] <-> N ids (prefix, then grid; grid (1, N) for the 1D interface)."""

    channels = 3

    def __init__(self, config: AliTokConfig = AliTokConfig()) -> None:
        super().__init__()
        self.config = config
        self.image_size, self.grid = config.image_size, (1, config.num_tokens)
        self.latent_tokens = nn.Parameter(torch.zeros(config.num_tokens, config.encoder.width))  # learned queries
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quantize = Codebook(config.codebook_size, config.code_dim)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, G*p, G*p] in [0, 1] -> ids [B, N] (the prefix tokens, then the grid in raster order)."""
        self.check_images(images)
        return nearest_codes(self.encoder(images, self.latent_tokens), self.quantize.embedding.weight)
