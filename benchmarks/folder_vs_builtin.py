"""Known-answer check of the image-folder path: Fashion-MNIST exported as 32 x 32 PNGs in class
folders must give what the built-in `fashion-mnist:` path gives (same pixels, same codes, same
reference statistics), and FOLDER:heldout must be 10% of each class.

    python benchmarks/folder_vs_builtin.py --tokenizer results/fashion_mnist/tokenizer \
        --classifier results/fashion_mnist/classifier [--split test]
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from rear.data.fashion_mnist import CLASSES, load_fashion_mnist, to_tensor
from rear.data.sources import open_source, read_all
from rear.evaluation.classifier import load_classifier
from rear.evaluation.evaluate import to_classifier_input
from rear.images import to_uint8
from rear.metrics import fid_from_features
from rear.tokenizer.load import load_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer", required=True)
    parser.add_argument("--classifier", required=True)
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images, labels = load_fashion_mnist(args.split)
    padded = to_uint8(to_tensor(images, 32))[..., 0]  # [n, 32, 32], what the built-in path feeds the models
    root = Path(tempfile.mkdtemp(prefix="rear-fmnist-png-"))
    order = []  # the folder's file order: class by class, then by name
    for c, name in enumerate(CLASSES):
        folder = root / f"{c}-{name.replace('/', '-')}"  # numbered: sorted folders = class indices
        folder.mkdir()
        for i in np.flatnonzero(labels == c):
            Image.fromarray(padded[i]).save(folder / f"{i:05d}.png")
        order += sorted(np.flatnonzero(labels == c).tolist(), key=lambda i: f"{i:05d}")
    order = np.asarray(order)

    built_in, _ = read_all(open_source(f"fashion-mnist:{args.split}", 1), 32)
    from_folder, folder_labels = read_all(open_source(str(root), 1), 32)
    same_pixels = torch.equal(built_in[order], from_folder) and (labels[order] == folder_labels.numpy()).all()
    print(f"{len(from_folder)} images: pixels and labels identical to fashion-mnist:{args.split}: {bool(same_pixels)}")

    tokenizer = load_tokenizer(args.tokenizer)
    codes = [torch.cat([tokenizer.encode(x[i : i + 500]) for i in range(0, len(x), 500)]) for x in (built_in[order], from_folder)]
    print(f"tokens identical: {torch.equal(*codes)} ({codes[0].numel()} tokens)")

    classifier = load_classifier(args.classifier)
    features = [classifier.embed(to_classifier_input(to_uint8(x).repeat(3, axis=-1), classifier))["pool"]
                for x in (built_in, from_folder)]
    print(f"FID between the two paths (classifier features): {fid_from_features(*features):.2e}")

    heldout, _ = read_all(open_source(f"{root}:heldout", 1), 32)
    train, _ = read_all(open_source(f"{root}:train", 1), 32)
    per_class = np.bincount(read_all(open_source(f"{root}:heldout", 1), 32)[1].numpy())
    print(f"{root}:heldout = {len(heldout)} images ({per_class.min()}-{per_class.max()} per class), train = {len(train)}")
    held = classifier.embed(to_classifier_input(to_uint8(heldout).repeat(3, axis=-1), classifier))["pool"]
    print(f"FID of FOLDER:heldout against the whole split: {fid_from_features(held, features[0]):.3f} "
          "(a 10% subset of the same images: small, not zero)")


if __name__ == "__main__":
    main()
