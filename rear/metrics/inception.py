"""InceptionV3 features for FID, sFID and IS: pytorch-fid's port of the 2015 TF FID graph, in plain PyTorch.

Names and shapes are those of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`; the TF quirks are kept
(average pools that leave padding out, a max pool in Mixed_7c). Preprocessing is pytorch-fid's.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rear.download import fetch, sha256
from rear.metrics.features import embed_batches
from rear.weights import load_state, read_torch_file

WEIGHTS_NAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = f"https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/{WEIGHTS_NAME}"
# The whole digest (the name carries its first 8 hex digits, torch.hub's convention); the same value and
# size (95,628,359 bytes) are recorded independently by several FID pipelines for this file.
WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
HINT = (f"download {WEIGHTS_URL} by hand and pass its path (--inception PATH), set REAR_INCEPTION, "
        f"or put it at ~/.cache/rear/{WEIGHTS_NAME}")
SPATIAL_CHANNELS = 7  # ADM's sFID keeps the first 7 channels of mixed_6/conv


class BasicConv2d(nn.Module):
    """Conv (no bias) -> BatchNorm (TF eps 1e-3) -> ReLU; `pad` keeps the size for stride 1."""

    def __init__(self, cin: int, cout: int, kernel: int | tuple, stride: int = 1, pad: bool = False) -> None:
        super().__init__()
        kernel = (kernel, kernel) if isinstance(kernel, int) else kernel
        padding = (kernel[0] // 2, kernel[1] // 2) if pad else 0
        self.conv = nn.Conv2d(cin, cout, kernel, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def chain(x: torch.Tensor, *layers: nn.Module) -> torch.Tensor:
    """Apply `layers` in order."""
    for layer in layers:
        x = layer(x)
    return x


def tf_avg_pool(x: torch.Tensor) -> torch.Tensor:
    """3x3 stride-1 average that, like TF, leaves padded zeros out of the mean."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):
    """35x35 block: 1x1 | 1x1-5x5 | 1x1-3x3-3x3 | pool-1x1 -> 224 + pool_features channels."""

    def __init__(self, cin: int, pool_features: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 64, 1)
        self.branch5x5_1, self.branch5x5_2 = BasicConv2d(cin, 48, 1), BasicConv2d(48, 64, 5, pad=True)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = BasicConv2d(64, 96, 3, pad=True), BasicConv2d(96, 96, 3, pad=True)
        self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1x1(x), chain(x, self.branch5x5_1, self.branch5x5_2),
                          chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          self.branch_pool(tf_avg_pool(x))], 1)


class InceptionB(nn.Module):
    """35x35 -> 17x17 reduction: 3x3/2 | 1x1-3x3-3x3/2 | maxpool/2 -> 480 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = BasicConv2d(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(cin, 64, 1)
        self.branch3x3dbl_2, self.branch3x3dbl_3 = BasicConv2d(64, 96, 3, pad=True), BasicConv2d(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch3x3(x), chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3),
                          F.max_pool2d(x, 3, stride=2)], 1)


class InceptionC(nn.Module):
    """17x17 block with factorised 7x7s: 1x1 | 1x7-7x1 | (7x1-1x7)x2 | pool-1x1 -> 768 channels."""

    def __init__(self, cin: int, c7: int) -> None:
        super().__init__()
        self.branch1x1 = BasicConv2d(cin, 192, 1)
        self.branch7x7_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7_2 = BasicConv2d(c7, c7, (1, 7), pad=True)
        self.branch7x7_3 = BasicConv2d(c7, 192, (7, 1), pad=True)
        self.branch7x7dbl_1 = BasicConv2d(cin, c7, 1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, (7, 1), pad=True)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, (1, 7), pad=True)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, (7, 1), pad=True)
        self.branch7x7dbl_5 = BasicConv2d(c7, 192, (1, 7), pad=True)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        double = chain(x, self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                       self.branch7x7dbl_5)
        return torch.cat([self.branch1x1(x), chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3), double,
                          self.branch_pool(tf_avg_pool(x))], 1)


class InceptionD(nn.Module):
    """17x17 -> 8x8 reduction: 1x1-3x3/2 | 1x1-1x7-7x1-3x3/2 | maxpool/2 -> 512 + cin channels."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1, self.branch3x3_2 = BasicConv2d(cin, 192, 1), BasicConv2d(192, 320, 3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(cin, 192, 1)
        self.branch7x7x3_2 = BasicConv2d(192, 192, (1, 7), pad=True)
        self.branch7x7x3_3 = BasicConv2d(192, 192, (7, 1), pad=True)
        self.branch7x7x3_4 = BasicConv2d(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seven = chain(x, self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4)
        return torch.cat([chain(x, self.branch3x3_1, self.branch3x3_2), seven, F.max_pool2d(x, 3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 block with split 3x3s: 1x1 | 1x1-(1x3,3x1) | 1x1-3x3-(1x3,3x1) | pool-1x1 -> 2048 channels.

    The FID graph pools with a TF average in Mixed_7b but with a max in Mixed_7c (`max_pool=True`).
    """

    def __init__(self, cin: int, max_pool: bool = False) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = BasicConv2d(cin, 320, 1)
        self.branch3x3_1 = BasicConv2d(cin, 384, 1)
        self.branch3x3_2a = BasicConv2d(384, 384, (1, 3), pad=True)
        self.branch3x3_2b = BasicConv2d(384, 384, (3, 1), pad=True)
        self.branch3x3dbl_1, self.branch3x3dbl_2 = BasicConv2d(cin, 448, 1), BasicConv2d(448, 384, 3, pad=True)
        self.branch3x3dbl_3a = BasicConv2d(384, 384, (1, 3), pad=True)
        self.branch3x3dbl_3b = BasicConv2d(384, 384, (3, 1), pad=True)
        self.branch_pool = BasicConv2d(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch3x3_1(x)
        double = chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else tf_avg_pool(x)
        return torch.cat([self.branch1x1(x), self.branch3x3_2a(single), self.branch3x3_2b(single),
                          self.branch3x3dbl_3a(double), self.branch3x3dbl_3b(double), self.branch_pool(pooled)], 1)


class InceptionFeatures(nn.Module):
    """FID InceptionV3: images [B, 1|3, H, W] in [0, 1] -> pool [B, 2048], spatial [B, 2023], probs [B, 1008]."""

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3, self.Conv2d_2a_3x3 = BasicConv2d(3, 32, 3, stride=2), BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, pad=True)
        self.Conv2d_3b_1x1, self.Conv2d_4a_3x3 = BasicConv2d(64, 80, 1), BasicConv2d(80, 192, 3)
        self.Mixed_5b, self.Mixed_5c, self.Mixed_5d = InceptionA(192, 32), InceptionA(256, 64), InceptionA(288, 64)
        self.Mixed_6a = InceptionB(288)
        self.Mixed_6b, self.Mixed_6c = InceptionC(768, 128), InceptionC(768, 160)
        self.Mixed_6d, self.Mixed_6e = InceptionC(768, 160), InceptionC(768, 192)
        self.Mixed_7a = InceptionD(768)
        self.Mixed_7b, self.Mixed_7c = InceptionE(1280), InceptionE(2048, max_pool=True)
        self.fc = nn.Linear(2048, 1008)

    @staticmethod
    def preprocess(images: torch.Tensor) -> torch.Tensor:
        """[B, 1|3, H, W] in [0, 1] -> [B, 3, 299, 299] in [-1, 1], as pytorch-fid (bilinear, no corner alignment)."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"need images [B, 1 or 3, H, W] in [0, 1], got shape {tuple(images.shape)}")
        x = F.interpolate(images.float().expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
        return 2 * x - 1

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(images)  # [B, 3, 299, 299]
        x = chain(x, self.Conv2d_1a_3x3, self.Conv2d_2a_3x3, self.Conv2d_2b_3x3)  # [B, 64, 147, 147]
        x = chain(F.max_pool2d(x, 3, stride=2), self.Conv2d_3b_1x1, self.Conv2d_4a_3x3)  # [B, 192, 71, 71]
        x = chain(F.max_pool2d(x, 3, stride=2), self.Mixed_5b, self.Mixed_5c, self.Mixed_5d)  # [B, 288, 35, 35]
        x = chain(x, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c, self.Mixed_6d)  # [B, 768, 17, 17]
        # TF's mixed_6 is Mixed_6d (mixed, mixed_1, ... count 5b, 5c, ...) and mixed_6/conv its 1x1 branch
        # after ReLU, i.e. the first 192 channels of the block's output. ADM keeps 7 of them and flattens
        # NHWC, so flatten channels-last too: the numbers then line up with its reference mu_s / sigma_s.
        spatial = x[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)  # [B, 17 * 17 * 7]
        x = chain(x, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c)  # [B, 2048, 8, 8]
        pool = x.mean((2, 3))  # [B, 2048]
        # IS as ADM and improved-GAN compute it: softmax of pool @ W, without the fc bias
        probs = (pool @ self.fc.weight.T).softmax(-1)  # [B, 1008]
        return {"pool": pool, "spatial": spatial, "probs": probs}

    def embed(self, images: torch.Tensor, batch_size: int = 50) -> dict[str, np.ndarray]:
        """{"pool": [n, 2048], "spatial": [n, 2023], "probs": [n, 1008]} float64, like `Classifier.embed`."""
        self.eval()
        return embed_batches(self, images, batch_size, next(self.parameters()).device)


def check_weights(path: Path) -> str | None:
    """A complaint unless the file's whole SHA-256 is WEIGHTS_SHA256."""
    digest = sha256(path)
    return None if digest == WEIGHTS_SHA256 else f"SHA-256 {digest[:16]}..., not {WEIGHTS_SHA256[:16]}..."


def load_inception(path: str | Path | None = None) -> InceptionFeatures:
    """The FID InceptionV3, frozen, in eval mode, on the CPU; weights from `path`, else $REAR_INCEPTION,
    else ~/.cache/rear/pt_inception-2015-12-05-6726825d.pth (downloaded there first when missing)."""
    cached = Path.home() / ".cache" / "rear" / WEIGHTS_NAME
    path = Path(path or os.environ.get("REAR_INCEPTION") or cached)
    if path == cached and not path.is_file():
        try:
            fetch([WEIGHTS_URL], cached, check_weights)
        except OSError as error:  # offline, stalled, refused, HTTP error, wrong bytes
            raise FileNotFoundError(f"no InceptionV3 FID weights at {cached} ({error}); {HINT}") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found; {HINT}")
    state = read_torch_file(path)
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of InceptionV3 tensors")
    model = InceptionFeatures()
    # BatchNorm step counters do not affect eval outputs; a converted TF file need not carry them
    counters = {k: v for k, v in model.state_dict().items() if k.endswith("num_batches_tracked")}
    load_state(model, {**counters, **state}, str(path))
    return model.requires_grad_(False).eval()
