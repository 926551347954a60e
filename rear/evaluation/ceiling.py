"""The tokenizer's ceiling: what survives encode -> decode of held-out images, judged by the domain classifier.

No generator on a tokenizer can do much better than the tokenizer's own reconstructions: their FID and KID
against the originals bound the sample FID from below, and the classifier's accuracy on them bounds the
samples' class accuracy from above. A tokenizer can reconstruct pixels well (PSNR) and still lose what
the images are about (a shape drawn in a colour on another colour): the accuracy says so, PSNR does not.
"""
from __future__ import annotations

import sys

import numpy as np
import torch

from rear.data.sources import open_source, read_all, source_spec
from rear.data.store import TokenStore
from rear.evaluation.classifier import Classifier
from rear.metrics import fid_from_features, kernel_inception_distance
from rear.tokenizer.base import VQTokenizer

KEEPS = 0.9  # reconstructions should keep at least this share of the originals' accuracy


def _in_channels(x: torch.Tensor, classifier: Classifier) -> torch.Tensor:
    """[n, C, S, S] in the classifier's channels (gray <-> RGB)."""
    if classifier.config.channels == 1 and x.shape[1] == 3:
        return x.mean(1, keepdim=True)
    return x.expand(-1, 3, -1, -1) if classifier.config.channels == 3 and x.shape[1] == 1 else x


@torch.no_grad()
def reconstruct(tokenizer: VQTokenizer, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """decode(encode(images)) for images [n, C, S, S] in [0, 1], in batches (decode clamps to [0, 1])."""
    device = next(tokenizer.parameters()).device
    parts = [tokenizer.decode(tokenizer.encode(images[i : i + batch_size].to(device))).float().cpu()
             for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


@torch.no_grad()
def tokenizer_ceiling(tokenizer: VQTokenizer, classifier: Classifier, images: torch.Tensor,
                      labels: torch.Tensor | None = None) -> dict:
    """Of held-out images [n, C, S, S] in [0, 1] (and their labels [n]) against their reconstructions:
    {"images", "fid", "kid", "kid_se", and with labels "accuracy_originals", "accuracy_reconstructions"}."""
    if classifier.config.image_size != images.shape[-1]:
        raise ValueError(f"the classifier takes {classifier.config.image_size} px images, the tokenizer's are "
                         f"{images.shape[-1]} px; train the classifier at the tokenizer's image_size")
    originals = classifier.embed(_in_channels(images, classifier))
    rebuilt = classifier.embed(_in_channels(reconstruct(tokenizer, images), classifier))
    kid, kid_se = kernel_inception_distance(originals["pool"], rebuilt["pool"])
    result = {"images": len(images), "fid": fid_from_features(originals["pool"], rebuilt["pool"]), "kid": kid,
              "kid_se": kid_se}
    if labels is not None:
        truth = labels.cpu().numpy()
        result["accuracy_originals"] = float((originals["probs"].argmax(1) == truth).mean())
        result["accuracy_reconstructions"] = float((rebuilt["probs"].argmax(1) == truth).mean())
    return result


def source_ceiling(tokenizer: VQTokenizer, classifier: Classifier, spec: str, data_dir: str | None = None,
                   read: tuple[torch.Tensor, torch.Tensor] | None = None) -> dict:
    """`tokenizer_ceiling` on the labelled images of a source (fashion-mnist:test, FOLDER:heldout), read at the
    tokenizer's size and channels (or `read`, those images [n, C, S, S] and labels [n] already read);
    records the source."""
    images, labels = read or read_all(open_source(spec, tokenizer.channels, data_dir), tokenizer.image_size)
    return {"source": spec, **tokenizer_ceiling(tokenizer, classifier, images, labels)}


def store_ceiling(tokenizer: VQTokenizer, classifier: Classifier, store: TokenStore, items: np.ndarray,
                  data_dir: str | None = None) -> dict:
    """`tokenizer_ceiling` on the `items` of a token store, from the images of the store's own source in
    the tokenizer's channels; refuses a source that no longer lines up with the store (files skipped as
    unreadable then or now shift every later index)."""
    source = open_source(source_spec(store.manifest["source"]), tokenizer.channels, data_dir)
    images, labels = read_all(source, tokenizer.image_size)
    if len(images) != len(store) or not np.array_equal(labels.numpy(), np.asarray(store.labels)):
        raise ValueError(f"the store's source {store.manifest['source']} no longer matches the store "
                         f"({len(images)} readable images now, {len(store)} in the store, or other labels); "
                         "pretokenize it again")
    picked = torch.from_numpy(items)
    return tokenizer_ceiling(tokenizer, classifier, images[picked], labels[picked])


def ceiling_line(ceiling: dict) -> str:
    """One line of the figures, for a command to print."""
    accuracy = (f"; classifier accuracy {ceiling['accuracy_reconstructions']:.1%} on them, "
                f"{ceiling['accuracy_originals']:.1%} on the originals") if "accuracy_originals" in ceiling else ""
    return (f"tokenizer ceiling on {ceiling['images']} held-out images: reconstructions FID {ceiling['fid']:.2f}, "
            f"KID {ceiling['kid']:.4f} +- {ceiling['kid_se']:.4f}{accuracy}")


def report_ceiling(ceiling: dict, command: str, line: bool = True) -> str | None:
    """Print the figures (with `line`) and, on stderr, the warning when there is one; returns the warning."""
    if line:
        print(ceiling_line(ceiling))
    if warning := ceiling_warning(ceiling):
        print(f"{command}: warning: {warning}", file=sys.stderr)
    return warning


def ceiling_warning(ceiling: dict) -> str | None:
    """One plain line when the reconstructions lose class identity, naming what to change; else None."""
    if "accuracy_reconstructions" not in ceiling:
        return None
    kept, real = ceiling["accuracy_reconstructions"], ceiling["accuracy_originals"]
    if kept >= KEEPS * real:
        return None
    return (f"the tokenizer loses what the images are about: the classifier is right on {kept:.1%} of its "
            f"reconstructions of the held-out images against {real:.1%} of the originals, so no generator on it "
            "will score much above that class accuracy; train the tokenizer longer (steps=...) or give it a finer "
            "grid or more codes (configs/own/tokenizer.yaml lists the choices)")
