"""Train the own-images generator with settings changed and follow what it learns: the measurement behind
the choice of configs/own/generator.yaml (issue 22).

    python benchmarks/own_generator.py RUN --out DIR [--store STORE] [--every 250] [--samples 300] \\
        [--log benchmarks/logs/own_generator_NAME.jsonl] [--threads 1] [key=value ...]

RUN is a finished `runs/own` of the README block (its tokenizer, classifier, store and held-out store are
used as they are); key=value overrides configs/own/generator.yaml; --store trains on another store of the
same tokenizer (e.g. one pretokenized with flips). Every --every steps the run stops, is measured and
resumes (the same run as one without stops): the cross-entropy of the held-out tokens with their true
label, with the null label and with a wrong one (a generator that has learned the classes predicts
held-out tokens better with their label), the training tokens' cross-entropy with the true label, and
the class accuracy of --samples samples at the config's CFG by the run's classifier. One JSON line per
measurement.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from own_images import cpu_flags  # noqa: E402
from rear.config import TrainConfig, merge  # noqa: E402
from rear.evaluation.classifier import load_classifier  # noqa: E402
from rear.evaluation.evaluate import to_classifier_input  # noqa: E402
from rear.generator.base import Generator  # noqa: E402
from rear.images import to_uint8  # noqa: E402
from rear.tokenizer.load import load_tokenizer  # noqa: E402
from rear.train.trainer import train  # noqa: E402


def token_ce(model: Generator, folder: Path, labels_of: str, rows: int = 600) -> float:
    """Mean next-token cross-entropy (nats) of the first `rows` items of a store (view 0)."""
    codes = torch.from_numpy(np.load(folder / "codes.npy")[:rows]).long()
    labels = torch.from_numpy(np.load(folder / "labels.npy")[:rows]).long()
    codes = codes[:, 0] if codes.dim() == 3 else codes
    C = model.config.num_classes
    labels = {"true": labels, "null": torch.full_like(labels, model.null_label), "wrong": (labels + 1) % C}[labels_of]
    with torch.no_grad():
        return F.cross_entropy(model.logits(codes, labels).flatten(0, 1).float(), codes.flatten()).item()


def class_accuracy(model: Generator, tokenizer, classifier, config: TrainConfig, count: int) -> float:
    labels = torch.arange(count) % model.config.num_classes
    rng = torch.Generator().manual_seed(0)
    with torch.no_grad():
        tokens = torch.cat([model.generate(labels[i:i + 100], config.sample, rng=rng) for i in range(0, count, 100)])
        images = to_uint8(tokenizer.decode(tokens).float())
    probs = classifier.embed(to_classifier_input(images, classifier))["probs"]
    return float((probs.argmax(1) == labels.numpy()).mean())


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished runs/own of the README block")
    parser.add_argument("--out", required=True)
    parser.add_argument("--store", help="train on this store instead of RUN/store")
    parser.add_argument("--every", type=int, default=250)
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--log")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("overrides", nargs="*")
    args = parser.parse_intermixed_args()
    torch.set_num_threads(args.threads)
    run_dir = Path(args.run)
    store = args.store or str(run_dir / "store")
    config = merge(TrainConfig, str(ROOT / "configs/own/generator.yaml"),
                   [f"store={store}", f"tokenizer={run_dir / 'tokenizer'}", f"out_dir={args.out}", f"threads={args.threads}",
                    "samples_per_class=0", *args.overrides])
    tokenizer, classifier = load_tokenizer(run_dir / "tokenizer"), load_classifier(run_dir / "classifier")
    log = open(args.log, "a") if args.log else None
    head = {"run": str(run_dir), "store": store, "overrides": args.overrides, "cpu": cpu_flags(), "threads": args.threads}
    print(json.dumps(head))
    if log:
        log.write(json.dumps(head) + "\n")
    done = 0
    for until in [*range(args.every, config.steps, args.every), config.steps]:
        start = time.perf_counter()
        checkpoint = train(config, resume=done > 0, progress=False, until=until)
        seconds = time.perf_counter() - start
        model = Generator.from_pretrained(checkpoint).eval()
        record = {"step": until, "train_seconds": round(seconds, 1),
                  "train_ce": token_ce(model, Path(store), "true"),
                  **{f"heldout_ce_{k}": token_ce(model, run_dir / "heldout", k) for k in ("true", "null", "wrong")},
                  "class_accuracy": class_accuracy(model, tokenizer, classifier, config, args.samples)}
        print(json.dumps(record), flush=True)
        if log:
            log.write(json.dumps(record) + "\n")
            log.flush()
        done = until


if __name__ == "__main__":
    run()
