"""Run the README's own-images block verbatim on a folder, time every line, and check its result with an
independent classifier: the measurement behind the README's own-images figures (issue 22).

    python benchmarks/own_images.py FOLDER --out runs/own_check/NAME [--log benchmarks/logs/own_NAME.json] [--resume]

FOLDER is linked as `my_images` inside --out and the block runs there (writing --out/runs/own). After it, a
second classifier (other widths and seed) is trained on the real training images and judges the samples:
the project's classifier and this one should agree on the samples' class accuracy. Each command's time is
appended to --out/timings.jsonl when it finishes; --resume continues a stopped run after the last one.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_docs_commands import own_images_block, rear_argv  # noqa: E402
from rear.cli import main as rear  # noqa: E402
from rear.config import ClassifierConfig  # noqa: E402
from rear.data.sources import open_source, read_all  # noqa: E402
from rear.evaluation.classifier import train_classifier  # noqa: E402
from rear.evaluation.evaluate import load_images, to_classifier_input  # noqa: E402


def cpu_flags() -> str:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    flags = [f for f in ("avx512_bf16", "avx512f", "avx2") if re.search(rf"\b{f}\b", text)]
    return f"{os.cpu_count()} cores, {' '.join(flags) or platform.processor()}"


def independent_accuracy(out: Path, channels: int, num_classes: int) -> dict:
    """Class accuracy of the samples by a second classifier (widths [16, 32, 64], seed 1) of the real images."""
    train, heldout = (read_all(open_source(f"my_images:{part}", channels), 32) for part in ("train", "heldout"))
    config = ClassifierConfig(channels=channels, num_classes=num_classes, widths=[16, 32, 64], seed=1)
    metrics = train_classifier(config, train, heldout, out / "independent", progress=False)
    from rear.evaluation.classifier import load_classifier

    judge = load_classifier(out / "independent")
    images, labels = load_images(out / "runs/own/samples/samples.npz")
    probs = judge.embed(to_classifier_input(images, judge))["probs"]
    return {"heldout_accuracy": metrics["test_accuracy"], "sample_class_accuracy": float((probs.argmax(1) == labels).mean())}


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder")
    parser.add_argument("--out", required=True, help="a new folder: the block runs inside it")
    parser.add_argument("--log", help="write the summary JSON here too")
    parser.add_argument("--resume", action="store_true", help="continue the run in --out after its last timed command")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    if not args.resume:
        out.mkdir(parents=True)
        (out / "my_images").symlink_to(Path(args.folder).resolve())
        (out / "configs").symlink_to(ROOT / "configs")
    os.chdir(out)
    log = out / "timings.jsonl"
    timings = [json.loads(line) for line in log.read_text().splitlines()] if args.resume and log.is_file() else []
    block = own_images_block()
    if [t["command"] for t in timings] != block[:len(timings)]:
        raise SystemExit(f"{log} does not time the README block's first commands: start a new --out")
    for command in block[len(timings):]:
        began = time.perf_counter()
        rear(rear_argv(command))
        timings.append({"command": command, "seconds": round(time.perf_counter() - began, 1)})
        with log.open("a") as f:
            f.write(json.dumps(timings[-1]) + "\n")
        print(f"### {timings[-1]['seconds']:.0f} s  {command}", flush=True)
    score = json.loads((out / "runs/own/score.json").read_text())
    tokenizer = json.loads((out / "runs/own/tokenizer/config.json").read_text())
    classes = json.loads((out / "runs/own/classifier/config.json").read_text())["num_classes"]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    summary = {"folder": str(args.folder), "cpu": cpu_flags(), "torch_threads": torch.get_num_threads(),
               "channels": tokenizer["channels"], "classes": classes,
               "total_minutes": round(sum(t["seconds"] for t in timings) / 60, 1), "timings": timings,
               "score": score, "independent": independent_accuracy(out, tokenizer["channels"], classes),
               "tokenizer": json.loads((out / "runs/own/tokenizer/metrics.json").read_text())}
    summary["tokenizer"].pop("config", None)
    text = json.dumps(summary, indent=2, default=lambda v: float(v) if isinstance(v, np.floating) else str(v))
    (out / "summary.json").write_text(text)
    if args.log:
        Path(ROOT / args.log if not Path(args.log).is_absolute() else args.log).write_text(text)
    print(text)


if __name__ == "__main__":
    run()
