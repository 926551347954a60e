"""AliTok (ali-vilab/alitok): 256x256 RGB <-> 273 ids (17 prefix tokens, then 16x16 grid tokens), 4096 codes x 32.

Layout of the released `AliTok.pth` (the stage-2 model of `modeling/alitok.py`, a plain state dict); module
names equal its keys, so loading is a key copy (REFERENCE.md section 11).
- Encoder, ViT-B (768 x 12, 12 heads): [256 patch embeddings, 273 learned latent queries], each with its own
  positional table; the 273 query outputs are projected to 32 dims and take the nearest code (squared L2).
- Decoder, ViT-L (1024 x 24, 16 heads): [32 learned class rows, 273 code vectors] plus one positional table of
  305 rows; the last 256 outputs are the 16x16 image patches: 1x1 conv to 16*16*3 pixels, 1x1 conv 3 -> 3, sigmoid.
Both stacks are pre-LayerNorm (eps 1e-5) blocks with unmasked attention and a GELU MLP (4x). The paper's causal
decoder is stage 1 of training; the released stage-2 decoder is bidirectional.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from rear.tokenizer.base import Codebook, VQTokenizer, nearest_codes

PATCH, GRID = 16, 16  # 256 = GRID * PATCH pixels a side
PREFIX = 17  # tokens before the grid tokens
TOKENS = PREFIX + GRID * GRID  # N = 273
CODES, CODE_DIM = 4096, 32  # K, Z
CLASS_ROWS = 32  # learned rows in front of the decoder's sequence
ENCODER = dict(width=768, depth=12, heads=12)
DECODER = dict(width=1024, depth=24, heads=16)


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

    def __init__(self, width: int, depth: int, heads: int) -> None:
        super().__init__()
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(Block(width, heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)

    def blocks(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln_pre(x)  # [B, N, D]
        for block in self.transformer:
            x = block(x)
        return x


class Encoder(Transformer):
    """images [B, 3, 256, 256] and latent queries [273, D] -> latents [B, Z, 1, 273]."""

    def __init__(self) -> None:
        super().__init__(**ENCODER)
        width = ENCODER["width"]
        self.patch_embed = nn.Conv2d(3, width, PATCH, stride=PATCH)
        self.positional_embedding = nn.Parameter(torch.zeros(GRID * GRID, width))
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(TOKENS, width))
        self.conv_out = nn.Conv2d(width, CODE_DIM, 1)

    def forward(self, images: torch.Tensor, latent_tokens: torch.Tensor) -> torch.Tensor:
        B = images.shape[0]
        patches = self.patch_embed(images).flatten(2).transpose(1, 2) + self.positional_embedding  # [B, 256, D]
        queries = (latent_tokens + self.latent_token_positional_embedding).expand(B, -1, -1)  # [B, 273, D]
        x = self.blocks(torch.cat([patches, queries], 1))[:, GRID * GRID :]  # [B, 273, D]
        x = self.ln_post(x).transpose(1, 2).unsqueeze(2)  # [B, D, 1, 273]: a permute, not TiTok's reshape
        return self.conv_out(x)  # [B, Z, 1, 273]


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
    """latents [B, Z, 1, 273] -> images [B, 3, 256, 256] in (0, 1)."""

    def __init__(self) -> None:
        super().__init__(**DECODER)
        width = DECODER["width"]
        self.decoder_embed = nn.Linear(CODE_DIM, width)
        self.class_embedding = nn.Parameter(torch.zeros(CLASS_ROWS, width))
        self.latent_token_positional_embedding = nn.Parameter(torch.zeros(CLASS_ROWS + TOKENS, width))
        # a Sequential so the conv's keys read ffn.0.*, as in the release
        self.ffn = nn.Sequential(nn.Conv2d(width, PATCH * PATCH * 3, 1), PatchesToPixels(PATCH))
        self.conv_out = nn.Conv2d(3, 3, 1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        B = latents.shape[0]
        x = self.decoder_embed(latents.flatten(2).transpose(1, 2))  # [B, 273, D]
        rows = self.class_embedding.expand(B, -1, -1)  # [B, 32, D]
        x = torch.cat([rows, x], 1) + self.latent_token_positional_embedding  # [B, 305, D]
        x = self.ln_post(self.blocks(x)[:, -GRID * GRID :])  # [B, 256, D]: the grid outputs, raster order
        x = x.transpose(1, 2).reshape(B, -1, GRID, GRID)  # [B, D, 16, 16]
        return torch.sigmoid(self.conv_out(self.ffn(x)))  # [B, 3, 256, 256]


class AliTok(VQTokenizer):
    """The AliTok tokenizer: 256x256 RGB in [0, 1] <-> 273 ids of 4096 codes (grid (1, 273) for the 1D interface)."""

    image_size, channels, grid = GRID * PATCH, 3, (1, TOKENS)

    def __init__(self) -> None:
        super().__init__()
        self.latent_tokens = nn.Parameter(torch.zeros(TOKENS, ENCODER["width"]))  # the encoder's learned queries
        self.encoder = Encoder()
        self.decoder = Decoder()
        self.quantize = Codebook(CODES, CODE_DIM)

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, 256, 256] in [0, 1] -> ids [B, 273] (17 prefix tokens, then the grid in raster order)."""
        self.check_images(images)
        return nearest_codes(self.encoder(images, self.latent_tokens), self.quantize.embedding.weight)
