"""A domain classifier for small datasets: its penultimate features and softmax stand in for
InceptionV3 in FID, IS and precision/recall, and its predictions give samples' class accuracy."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rear.config import ClassifierConfig, chosen_keys, merge, to_dict
from rear.data.folder import infer_channels
from rear.data.sources import open_source, parse_source, read_all, split_parts
from rear.metrics.features import embed_batches
from rear.progress import bar as progress_bar
from rear.weights import CONFIG, WEIGHTS, load_state, read_tensors, replace_dir, write_weights


class Classifier(nn.Module):
    """Conv-BN-ReLU pairs per resolution, max-pool between; features [B, F] -> logits [B, classes]."""

    def __init__(self, config: ClassifierConfig) -> None:
        super().__init__()
        self.config = config
        layers, cin = [], config.channels
        for width in config.widths:
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(),
                       nn.MaxPool2d(2)]
            cin = width
        side = config.image_size // 2 ** len(config.widths)
        self.trunk = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * side * side, config.feature_dim), nn.ReLU())
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, C, S, S] in [0, 1] -> penultimate features [B, F]."""
        return self.trunk(images * 2 - 1)

    def spatial_features(self, images: torch.Tensor) -> torch.Tensor:
        """First 7 channels of the first stage [B, 7 * S/2 * S/2] (ADM's sFID takes mixed_6/conv[:7])."""
        return self.trunk[:7](images * 2 - 1)[:, :7].flatten(1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.dropout(self.features(images)))

    def embed(self, images: torch.Tensor, batch_size: int = 500) -> dict[str, np.ndarray]:
        """{"pool": features [n, F], "spatial": [n, 7*s*s], "probs": softmax [n, classes]}, eval mode."""
        self.eval()

        def extract(x: torch.Tensor) -> dict[str, torch.Tensor]:
            x = x.float()
            f = self.features(x)
            return {"pool": f, "spatial": self.spatial_features(x), "probs": self.head(f).softmax(-1)}

        return embed_batches(extract, images, batch_size, next(self.parameters()).device)


def augment(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    """Random horizontal flips and shifts of up to 2 pixels."""
    flip = torch.rand(len(images), generator=rng) < 0.5
    images = torch.where(flip[:, None, None, None], images.flip(-1), images)
    padded = F.pad(images, (2, 2, 2, 2))
    dy, dx = torch.randint(0, 5, (2,), generator=rng).tolist()
    return padded[..., dy : dy + images.shape[-2], dx : dx + images.shape[-1]]


def train_classifier(
    config: ClassifierConfig, train: tuple[torch.Tensor, torch.Tensor], test: tuple[torch.Tensor, torch.Tensor],
    out: str | Path, progress: bool = True, source: dict | None = None,
) -> dict:
    """Train on (images, labels), report test accuracy, save the folder (weights + config + metrics,
    with `source`: what it was trained on, which `rear eval score` checks samples against)."""
    torch.manual_seed(config.seed)
    g = torch.Generator().manual_seed(config.seed)
    model = Classifier(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=5e-4)
    images, labels = train
    if len(images) < config.batch_size:
        raise ValueError(f"the classifier's training part holds {len(images)} images, fewer than batch_size="
                         f"{config.batch_size}: pass batch_size={max(1, len(images) // 4)} (or add images)")
    per_epoch = len(images) // config.batch_size
    epochs = max(config.epochs, math.ceil(config.min_steps / per_epoch))
    steps = epochs * per_epoch
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.learning_rate, total_steps=steps)
    began = time.perf_counter()
    bar = progress_bar(total=steps, enabled=progress, desc="classifier", unit="step")
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(images), generator=g)
        for start in range(0, len(order) - config.batch_size + 1, config.batch_size):
            batch = order[start : start + config.batch_size]
            loss = F.cross_entropy(model(augment(images[batch], g)), labels[batch], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}")
    bar.close()
    probs = model.embed(test[0])["probs"]
    metrics = {"test_accuracy": float((probs.argmax(1) == test[1].numpy()).mean()),
               "train_seconds": time.perf_counter() - began, "steps": steps, "epochs": epochs, "source": source}

    def build(folder: Path) -> None:
        write_weights(model, folder / WEIGHTS)
        (folder / CONFIG).write_text(json.dumps(to_dict(config), indent=2))
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2))

    replace_dir(build, Path(out))
    return metrics


def load_classifier(folder: str | Path) -> Classifier:
    """A classifier saved by `train_classifier`."""
    folder = Path(folder)
    if not (folder / WEIGHTS).is_file():
        raise FileNotFoundError(f"{folder} has no {WEIGHTS}; train one with `rear eval train-classifier`")
    model = Classifier(merge(ClassifierConfig, str(folder / CONFIG)))
    load_state(model, read_tensors(folder / WEIGHTS), str(folder / WEIGHTS))
    return model.eval()


def train_classifier_on(spec: str, out: str | Path, configs: list, overrides: list[str],
                        data_dir: str | None = None, progress: bool = True) -> dict:
    """`rear eval train-classifier`: train on a source's training part and score its held-out part
    (fashion-mnist: train and test; a folder: FOLDER:train and FOLDER:heldout), the class count and
    channels read from the data unless `configs` (YAML paths) or `overrides` choose them. Returns the
    metrics with the image counts of both parts."""
    merge(ClassifierConfig, *configs, overrides)  # a mistaken key or value fails here, before any data is read
    root, _ = parse_source(spec)
    parts = split_parts(spec)
    probe = open_source(parts[0], 1, data_dir)
    found = {"num_classes": len(probe.class_names), "channels": 1 if root == "fashion-mnist" else infer_channels(root)}
    chosen = chosen_keys(*configs, overrides)
    config = merge(ClassifierConfig, {k: v for k, v in found.items() if k not in chosen}, *configs, overrides)
    train, test = (read_all(open_source(p, config.channels, data_dir), config.image_size) for p in parts)
    source = {"source": spec, "train": parts[0], "test": parts[1], "class_names": probe.class_names,
              "channels": config.channels, "image_size": config.image_size}
    metrics = train_classifier(config, train, test, out, progress, source=source)
    return {**metrics, "train_images": len(train[0]), "test_images": len(test[0])}
