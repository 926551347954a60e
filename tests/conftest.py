"""Shared tiny models: every test runs on the CPU in seconds."""
import pytest
import torch
from torch import nn

from rear.config import generator_preset
from rear.generator import Generator, build_generator
from rear.tokenizer.base import Codebook, VQTokenizer

torch.set_num_threads(2)


BACKBONE_PRESETS = ["rear-tiny", "llama-tiny"]  # one tiny preset per backbone


def tiny_config(preset: str = "rear-tiny", **overrides):
    """A 2-block model: 32 codes, 5 classes, 16 tokens, alignment heads into 8 dims."""
    fields = dict(codebook_size=32, num_classes=5, num_tokens=16, align={"code_dim": 8, "decode_layer": 1})
    fields.update(overrides)
    return generator_preset(preset, **fields)


def random_generator(seed: int = 0, std: float = 0.3, preset: str = "rear-tiny", **overrides) -> Generator:
    """A tiny generator whose every weight is random (adaLN-Zero init would make blocks identity)."""
    torch.manual_seed(seed)
    model = build_generator(tiny_config(preset, **overrides))
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, std)
    return model.eval()


@pytest.fixture(params=BACKBONE_PRESETS)
def model(request):
    """A random tiny generator of each backbone."""
    return random_generator(preset=request.param)


class PatchTokenizer(VQTokenizer):
    """A tiny deterministic tokenizer: 4x4 patches -> 8-dim latents, 16 codes; 8x8 images, 2x2 grid."""

    image_size, grid = 8, (2, 2)

    def __init__(self, channels=1, seed=0):
        super().__init__()
        torch.manual_seed(seed)
        self.channels = channels
        self.encoder = nn.Conv2d(channels, 8, 4, stride=4)
        self.decoder = nn.ConvTranspose2d(8, channels, 4, stride=4)
        self.quantize = Codebook(16, 8)


def tiny_conv_vq(seed: int = 0):
    """A loadable tokenizer of PatchTokenizer's shape: 8x8 grayscale -> 2x2 tokens of 16 codes, 8 dims."""
    from rear.config import ConvVQConfig
    from rear.tokenizer.conv_vq import ConvVQTokenizer

    torch.manual_seed(seed)
    return ConvVQTokenizer(ConvVQConfig(image_size=8, codebook_size=16, code_dim=8, widths=[8, 8, 8],
                                        res_blocks=[0, 0, 0], groups=4))
