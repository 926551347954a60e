"""The tokenizer interface every command uses: images <-> raster token ids <-> codebook vectors.

A VQ tokenizer is an `encoder` (images -> latents [B, Z, h, w]), a codebook `quantize.embedding`
[K, Z] with nearest-neighbour lookup by squared L2, and a `decoder` (latents -> images). Shapes:
B batch, C channels, H x W pixels, h x w token grid, N = h * w tokens (raster, row-major), K codes,
Z code dimension. Images are float in [0, 1].
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from rear.hub import CardInfo
from rear.weights import state_fingerprint


def nearest_codes(latents: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """latents [B, Z, h, w], codebook [K, Z] -> ids [B, h*w] of the nearest code (squared L2)."""
    B = latents.shape[0]
    flat = latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])  # [B*h*w, Z]
    # |x - c|^2 = |x|^2 + |c|^2 - 2 x.c, and |x|^2 does not change the argmin over codes
    distances = torch.addmm(codebook.pow(2).sum(1)[None], flat, codebook.T, alpha=-2)  # [B*h*w, K]
    return distances.argmin(1).view(B, -1)


class Codebook(nn.Module):
    """The K x Z code vectors, stored as `embedding.weight` (the MaskGIT-VQGAN name)."""

    def __init__(self, codebook_size: int, code_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, code_dim)


class VQTokenizer(nn.Module):
    """Base of every tokenizer: subclasses build `encoder`, `decoder` and `quantize`."""

    encoder: nn.Module
    decoder: nn.Module
    quantize: Codebook
    image_size: int  # H = W
    channels: int  # C
    grid: tuple[int, int]  # (h, w)
    # what the folder it was loaded from recorded of its training and metrics (rear.tokenizer.load);
    # save_pretrained writes it again unless told otherwise
    card_info: CardInfo = CardInfo()

    @property
    def codebook_size(self) -> int:
        return self.quantize.embedding.num_embeddings

    @property
    def code_dim(self) -> int:
        return self.quantize.embedding.embedding_dim

    @property
    def num_tokens(self) -> int:
        return self.grid[0] * self.grid[1]

    def check_images(self, images: torch.Tensor) -> None:
        """Raise ValueError unless images are [B, C, H, W] of this tokenizer's size."""
        expected = (self.channels, self.image_size, self.image_size)
        if images.dim() != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(
                f"this tokenizer takes images [B, {expected[0]}, {expected[1]}, {expected[2]}] in [0, 1], "
                f"got {tuple(images.shape)}; resize or crop them first"
            )

    def check_fits(self, codebook_size: int, num_tokens: int, what: str) -> None:
        """Raise ValueError unless `what` (a generator, a store) speaks this tokenizer's ids."""
        if (codebook_size, num_tokens) != (self.codebook_size, self.num_tokens):
            raise ValueError(
                f"{what} has {num_tokens} tokens of {codebook_size} codes but this tokenizer makes "
                f"{self.num_tokens} tokens of {self.codebook_size} codes; use the tokenizer it was trained with"
            )

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, H, W] in [0, 1] -> token ids [B, N] (raster, row-major)."""
        self.check_images(images)
        return nearest_codes(self.encoder(images), self.quantize.embedding.weight)

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, N] -> codebook vectors [B, N, Z]."""
        return self.quantize.embedding(ids)

    def latents(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, N] -> quantized latents [B, Z, h, w]."""
        h, w = self.grid
        return self.embed(ids).view(ids.shape[0], h, w, -1).permute(0, 3, 1, 2)

    @torch.no_grad()
    def decode(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, N] -> images [B, C, H, W] clamped to [0, 1]."""
        if ids.dim() != 2 or ids.shape[1] != self.num_tokens:
            raise ValueError(f"expected token ids [B, {self.num_tokens}], got {tuple(ids.shape)}")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.codebook_size):
            raise ValueError(f"token ids must lie in [0, {self.codebook_size - 1}]")
        return self.reconstruct(self.latents(ids)).clamp(0, 1)

    def reconstruct(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, Z, h, w] -> images [B, C, H, W], unclamped."""
        return self.decoder(latents)

    # ---------------------------------------------------------------- sharing
    @classmethod
    def from_pretrained(cls, name: str | Path, device: str | torch.device = "cpu") -> "VQTokenizer":
        """Any tokenizer rear knows (rear.tokenizer.load.load_tokenizer), from a local folder or file or a
        Hugging Face repo id (downloaded with the `hub` extra)."""
        from rear.tokenizer.load import load_tokenizer

        return load_tokenizer(name, device)

    def config_files(self) -> dict[str, str]:
        """Files beside the weights that rebuilding this tokenizer needs (name -> text); none when the
        sizes are read off the tensors."""
        return {}

    def save_pretrained(self, folder: str | Path, training: dict | None = None, metrics: dict | None = None) -> Path:
        """Write a folder `from_pretrained` reads: model.safetensors, any config file, and a model card
        (README.md, card.json); training and metrics not given are those it was loaded with."""
        from rear.weights import replace_dir

        info = CardInfo(training if training is not None else self.card_info.training,
                        metrics if metrics is not None else self.card_info.metrics)
        replace_dir(lambda staging: self.write_files(staging, info), Path(folder))
        return Path(folder)

    def write_files(self, folder: Path, info: CardInfo) -> None:
        """The saved tokenizer's files into `folder` (being built): weights, config files and model card.
        save_pretrained and `rear tokenizer train` both use it."""
        from rear.hub import front_matter, model_card, write_card
        from rear.weights import WEIGHTS, write_weights

        write_weights(self, folder / WEIGHTS)
        for name, text in self.config_files().items():
            (folder / name).write_text(text)
        summary = (f"A VQ tokenizer, {self.describe()} (full: {self.fingerprint()}): images <-> raster token "
                   "ids, made or converted with rear.")
        C, S = self.channels, self.image_size
        snippet = "\n".join([
            "import torch", "from rear import VQTokenizer",
            'tokenizer = VQTokenizer.from_pretrained("PATH_OR_REPO_ID").eval()',
            f"ids = tokenizer.encode(torch.rand(1, {C}, {S}, {S}))  # [1, {self.num_tokens}] token ids",
            f"images = tokenizer.decode(ids)  # [1, {C}, {S}, {S}] in [0, 1]"])
        header = front_matter(["image-tokenizer", "vector-quantization", type(self).__name__],
                              "image-feature-extraction", [])
        write_card(folder, model_card(f"rear tokenizer ({type(self).__name__})", summary, snippet,
                                      {"class": type(self).__name__, "grid": list(self.grid)}, header,
                                      info.training, info.metrics), info)

    def fingerprint(self) -> str:
        """sha256 of the weights: names the exact tokenizer (see `state_fingerprint`)."""
        return state_fingerprint(self.state_dict())

    def describe(self) -> str:
        """What this tokenizer is, in one line (rear.hub.describe_tokenizer)."""
        from rear.hub import describe_tokenizer

        return describe_tokenizer(type(self).__name__, self.codebook_size, self.code_dim, self.grid, self.channels,
                                  self.image_size, self.fingerprint())

    def push_to_hub(self, repo_id: str, private: bool = False, training: dict | None = None,
                    metrics: dict | None = None) -> str:
        """save_pretrained into a temporary folder and upload it to a Hugging Face model repo (extra `hub`)."""
        import tempfile

        from rear.hub import push_folder

        with tempfile.TemporaryDirectory() as folder:
            self.save_pretrained(Path(folder) / "model", training, metrics)
            return push_folder(Path(folder) / "model", repo_id, private)
