"""The newcomer's main job on the embedded default, Fashion-MNIST (`make demo`, `rear demo`).

tokenizer (trained once, then reused) -> token store -> reAR generator -> class-by-class samples
and a loss curve. Every stage reuses finished work from an earlier run in the same folder.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path

from rear.config import TokenizerTrainConfig, TrainConfig, merge
from rear.data.sources import fashion_mnist_source
from rear.data.store import TokenStore, pretokenize
from rear.tokenizer.load import load_tokenizer
from rear.train.trainer import CHECKPOINT, SAMPLES, train


def _stage(message: str) -> float:
    print(f"\n== {message}", flush=True)
    return time.perf_counter()


def run_demo(tokenizer_config: str, generator_config: str, root: Path, data_dir: str | None = None) -> dict[str, Path]:
    """Run every stage under `root`; return the paths of the sample grid and the loss curve."""
    root = Path(root)
    began = _stage("1/4 tokenizer")
    tokenizer_dir = root / "tokenizer"
    if (tokenizer_dir / "model.safetensors").is_file():
        print(f"reusing the tokenizer in {tokenizer_dir}")
    else:
        from rear.train.tokenizer import fashion_mnist_images, train_tokenizer

        config = merge(TokenizerTrainConfig, tokenizer_config, {"out": str(tokenizer_dir), "data_dir": data_dir})
        metrics = train_tokenizer(config, *fashion_mnist_images(data_dir))
        print(f"held-out PSNR {metrics['psnr']:.2f} dB, codebook usage {metrics['usage']:.1%}")
    tokenizer = load_tokenizer(tokenizer_dir)
    fingerprint = tokenizer.fingerprint()

    t = _stage(f"2/4 pretokenize Fashion-MNIST train, one view ({time.perf_counter() - began:.0f} s so far)")
    store = root / f"store-{fingerprint[:12]}"  # one store per tokenizer: a retrained one never reuses it
    if TokenStore.is_complete(store):
        print(f"reusing the token store in {store}")
    else:
        source = fashion_mnist_source("train", data_dir, tokenizer.channels)
        pretokenize(source, tokenizer, store, tokenizer_path=str(tokenizer_dir), flip=False)  # one view: half the time
        print(f"pretokenized in {time.perf_counter() - t:.0f} s")

    _stage(f"3/4 train the reAR generator ({time.perf_counter() - began:.0f} s so far)")
    run = root / "generator"
    config = merge(TrainConfig, generator_config,
                   {"store": str(store), "tokenizer": str(tokenizer_dir), "out_dir": str(run)})
    if (run / CHECKPOINT).is_dir():
        print(f"resuming the run in {run}")
    train(config, resume=(run / CHECKPOINT).is_dir(), overwrite=True)  # a killed first try restarts clean

    _stage(f"4/4 results ({time.perf_counter() - began:.0f} s in all)")
    grid = run / SAMPLES / f"step_{config.steps:07d}.png"
    samples = shutil.copyfile(grid, root / "samples.png")
    print(f"class-by-class samples (one row per class): {samples}")
    print(f"loss curve: {run / 'loss.png'}")
    print(f"generator checkpoint: {run / CHECKPOINT}")
    return {"samples": Path(samples), "loss": run / "loss.png"}
