"""Train a ConvVQ tokenizer: MSE + commitment, straight-through codes, EMA codebook with restarts.

The codebook is not trained by the optimizer: it is an online spherical k-means of the encoder
outputs (EMA of code counts and sums), and a code whose EMA count falls below `dead_fraction` of
the mean restarts on a random encoder output of the current batch, so every code stays in use.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from rear import precision
from rear.config import TokenizerTrainConfig, to_dict
from rear.data.fashion_mnist import load_fashion_mnist, to_tensor
from rear.data.folder import infer_channels
from rear.data.sources import open_source, parse_source, read_all
from rear.hub import CardInfo
from rear.lock import locked
from rear.optim import learning_rate, make_optimizer
from rear.progress import bar as progress_bar
from rear.tokenizer.conv_vq import ConvVQTokenizer
from rear.tokenizer.load import METRICS
from rear.weights import replace_dir, replace_file


def fashion_mnist_images(data_dir: str | None = None, size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """(train [60000, 1, size, size], test [10000, 1, size, size]) in [0, 1], zero-padded from 28 x 28."""
    return (to_tensor(load_fashion_mnist("train", data_dir)[0], size),
            to_tensor(load_fashion_mnist("test", data_dir)[0], size))


def read_channels(config: TokenizerTrainConfig, spec: str, chosen: set[str]) -> str | None:
    """Set config.model.channels from an image folder's images unless the config or an override chose it
    (`chosen`: rear.config.chosen_keys); returns the line saying what was read, None for Fashion-MNIST."""
    root, _ = parse_source(spec)
    if root == "fashion-mnist" or "model.channels" in chosen:
        return None
    config.model.channels = infer_channels(root)
    return (f"channels: {config.model.channels} ({'grayscale' if config.model.channels == 1 else 'RGB'}), read from "
            f"the images of {root}; set model.channels to choose")


def source_images(spec: str, config: TokenizerTrainConfig, strict: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, held-out) images [n, C, S, S] in [0, 1] at the tokenizer's size and channels.

    `fashion-mnist`: the train split, the test split held out. An image folder (one sub-folder per
    class, ADM center crop): FOLDER:train, with FOLDER:heldout held out (the split every command names).
    """
    size, channels = config.model.image_size, config.model.channels
    root, _ = parse_source(spec)
    if root == "fashion-mnist":
        if channels != 1:
            raise ValueError(f"Fashion-MNIST is grayscale but the tokenizer has {channels} channels; set model.channels=1")
        return fashion_mnist_images(config.data_dir, size)
    train = read_all(open_source(f"{root}:train", channels), size, strict)[0]
    heldout = read_all(open_source(f"{root}:heldout", channels), size, strict)[0]
    if len(train) < 1 or len(heldout) < 1:
        raise ValueError(f"{root} has {len(train)} readable training and {len(heldout)} held-out images; "
                         "a tokenizer needs at least one of each (two images in a class)")
    return train, heldout


def flat_latents(latents: torch.Tensor) -> torch.Tensor:
    """latents [B, Z, h, w] -> [B*h*w, Z], rows in raster order like the token ids."""
    return latents.permute(0, 2, 3, 1).reshape(-1, latents.shape[1])


class CodebookEMA:
    """Online k-means on the unit sphere that writes the codebook in place and restarts dead codes."""

    def __init__(self, codebook: torch.Tensor, decay: float, dead_fraction: float, rng: torch.Generator) -> None:
        self.codebook, self.decay, self.dead_fraction, self.rng = codebook, decay, dead_fraction, rng
        self.counts = torch.zeros(codebook.shape[0])  # [K] EMA of assignments per batch
        self.sums = torch.zeros(codebook.shape)  # [K, Z] EMA of assigned latents

    def _restart(self, codes: torch.Tensor, latents: torch.Tensor) -> None:
        """Put `codes` [n] on random rows of latents [M, Z], each counted as an average code."""
        picks = torch.randint(len(latents), (len(codes),), generator=self.rng)  # [n]
        self.counts[codes] = len(latents) / len(self.counts)
        self.sums[codes] = latents[picks] * self.counts[codes, None]

    @torch.no_grad()
    def seed(self, latents: torch.Tensor) -> None:
        """Start every code on a random encoder output: latents [M, Z]."""
        self._restart(torch.arange(len(self.counts)), latents.float())
        self.codebook.copy_(F.normalize(self.sums, dim=1))

    @torch.no_grad()
    def update(self, latents: torch.Tensor, ids: torch.Tensor) -> int:
        """One EMA step from latents [M, Z] assigned to ids [M]; returns how many codes restarted."""
        latents, ids = latents.float(), ids.flatten()
        counts = torch.bincount(ids, minlength=len(self.counts)).float()  # [K]
        sums = torch.zeros_like(self.sums).index_add_(0, ids, latents)  # [K, Z]
        self.counts.lerp_(counts, 1 - self.decay)
        self.sums.lerp_(sums, 1 - self.decay)
        dead = (self.counts < self.dead_fraction * len(latents) / len(self.counts)).nonzero().flatten()  # [n]
        if len(dead):
            self._restart(dead, latents)
        # the direction of a cluster's sum is its spherical mean
        self.codebook.copy_(F.normalize(self.sums, dim=1))
        return len(dead)


def vq_loss(
    tokenizer: ConvVQTokenizer, images: torch.Tensor, commitment: float, bf16: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, reconstruction MSE, latents [B, Z, h, w], ids [B, N]) of one batch."""
    autocast = lambda: precision.autocast(images.device, bf16)  # noqa: E731
    with autocast():
        latents = tokenizer.encoder(images)  # [B, Z, h, w] float32 unit vectors
    codes, ids = tokenizer.quantize_latents(latents)  # the lookup stays float32
    with autocast():
        reconstruction = tokenizer.decoder(latents + (codes - latents).detach())  # straight through
    mse = F.mse_loss(reconstruction.float(), images)
    return mse + commitment * F.mse_loss(latents, codes), mse, latents, ids


def shuffled_batches(num_items: int, batch_size: int, rng: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless index batches [batch_size], a fresh permutation each epoch (remainders dropped)."""
    if not 0 < batch_size <= num_items:
        raise ValueError(f"batch_size {batch_size} must lie in [1, {num_items}], the number of training images")
    while True:
        order = torch.randperm(num_items, generator=rng)
        yield from order[: num_items - num_items % batch_size].split(batch_size)


def fit(config: TokenizerTrainConfig, images: torch.Tensor, progress: bool = True) -> tuple[ConvVQTokenizer, dict]:
    """Train a fresh tokenizer on images [n, C, H, W] in [0, 1]; returns it and training stats."""
    torch.manual_seed(config.seed)
    rng = torch.Generator().manual_seed(config.seed)
    tokenizer = ConvVQTokenizer(config.model).train()
    tokenizer.check_images(images[:1])
    codebook = tokenizer.quantize.embedding.weight.requires_grad_(False)
    optimizer = make_optimizer(tokenizer, config.optim)
    ema = CodebookEMA(codebook, config.codebook_decay, config.dead_fraction, rng)
    batches = shuffled_batches(len(images), config.batch_size, rng)
    restarts, smoothed = 0, None
    bar = progress_bar(range(config.steps), enabled=progress, unit="step", desc="tokenizer")
    for step in bar:
        x = images[next(batches)].contiguous(memory_format=torch.channels_last)  # [B, C, H, W]
        if step == 0:
            with torch.no_grad():
                ema.seed(flat_latents(tokenizer.encoder(x)))
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, config.steps, config.optim)
        loss, mse, latents, ids = vq_loss(tokenizer, x, config.commitment, config.bf16)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tokenizer.parameters(), config.optim.grad_clip)
        optimizer.step()
        restarts += ema.update(flat_latents(latents.detach()), ids)
        smoothed = mse.item() if smoothed is None else 0.98 * smoothed + 0.02 * mse.item()
        if step % 50 == 0 or step == config.steps - 1:
            bar.set_postfix(mse=f"{smoothed:.5f}", psnr=f"{-10 * math.log10(smoothed):.2f}", restarts=restarts)
    codebook.requires_grad_(True)
    tokenizer.eval()
    return tokenizer, {"train_mse": smoothed, "restarts": restarts}


@torch.no_grad()
def evaluate_tokenizer(tokenizer: ConvVQTokenizer, images: torch.Tensor, batch_size: int = 500) -> dict[str, float]:
    """Reconstruct images [n, C, H, W] in [0, 1] through the codes (float32).

    psnr: mean over images of each image's PSNR in dB (peak 1); psnr_of_mean_mse: the PSNR of the
    MSE over all pixels; usage: the fraction of the K codes that appear in the encoded images.
    """
    tokenizer.eval()
    used = torch.zeros(tokenizer.codebook_size, dtype=torch.bool)  # [K]
    errors = []
    for batch in images.split(batch_size):
        ids = tokenizer.encode(batch)  # [b, N]
        used[ids.flatten()] = True
        errors.append((tokenizer.decode(ids) - batch).pow(2).flatten(1).mean(1))  # [b]
    mse = torch.cat(errors).clamp_min(1e-10)  # [n]
    return {
        "psnr": (-10 * mse.log10()).mean().item(),
        "psnr_of_mean_mse": -10 * math.log10(mse.mean().item()),
        "mse": mse.mean().item(),
        "usage": used.float().mean().item(),
    }


@locked(lambda config, **_: config.out)
def train_tokenizer(
    config: TokenizerTrainConfig, images_train: torch.Tensor, images_heldout: torch.Tensor, progress: bool = True
) -> dict:
    """Train on images_train, evaluate on images_heldout, save `config.out` (tokenizer + metrics.json)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        start = time.perf_counter()
        tokenizer, stats = fit(config, images_train, progress)
        train_seconds = time.perf_counter() - start
        heldout = images_heldout[: config.eval_size]
        metrics = evaluate_tokenizer(tokenizer, heldout, config.eval_batch_size)
    finally:
        torch.set_num_threads(threads)
    metrics.update(stats, heldout_images=len(heldout), train_seconds=train_seconds, steps=config.steps)

    card = CardInfo({"config": to_dict(config)}, metrics)

    def build(folder: Path) -> None:
        tokenizer.write_files(folder, card)
        (folder / METRICS).write_text(json.dumps({**metrics, "config": to_dict(config)}, indent=2))

    replace_dir(build, Path(config.out))
    return metrics


def record_metrics(folder: str | Path, extra: dict) -> None:
    """Add `extra` to a saved tokenizer's metrics.json (written beside, then renamed over it)."""
    path = Path(folder) / METRICS
    replace_file(path, json.dumps({**json.loads(path.read_text()), **extra}, indent=2))
