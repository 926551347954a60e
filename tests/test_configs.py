"""Every shipped YAML config parses onto its schema and builds a consistent model."""
from pathlib import Path

import pytest
import torch

from rear.config import StudyConfig, TokenizerTrainConfig, TrainConfig, merge
from rear.generator import build_generator
from rear.tokenizer.conv_vq import ConvVQTokenizer

CONFIGS = sorted((Path(__file__).parent.parent / "configs").rglob("*.yaml"))


def test_configs_are_found():
    assert len(CONFIGS) >= 6


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_config_parses_and_builds(path):
    if path.name.startswith("classifier"):
        from rear.config import ClassifierConfig

        assert merge(ClassifierConfig, str(path)).min_steps >= 1
        return
    if path.name.startswith("tokenizer"):
        config = merge(TokenizerTrainConfig, str(path))
        tokenizer = ConvVQTokenizer(config.model)
        assert tokenizer.num_tokens == 64 and tokenizer.encode(torch.rand(1, 1, 32, 32)).shape == (1, 64)
        return
    if path.name.startswith("study"):
        study = merge(StudyConfig, str(path))
        # tokenizer.yaml's recipe; a study may change the code size (the Z hypothesis) and pin the precision
        recipe = {"out": study.tokenizer.out, "bf16": study.tokenizer.bf16, "model": {"code_dim": study.tokenizer.model.code_dim}}
        assert study.tokenizer == merge(TokenizerTrainConfig, str(path.parent / "tokenizer.yaml"), recipe)
        assert study.train.generator.align.code_dim == study.tokenizer.model.code_dim
        assert study.train.noise.anneal_end == 3 * study.train.steps // 4
        config = study.train
    else:
        config = merge(TrainConfig, str(path), ["store=s", "tokenizer=t"])
    generator = config.generator.validate()
    assert config.batch_size % config.grad_accumulation == 0
    assert generator.align.decode_layer == 3 * generator.depth // 4
    with torch.device("meta"):
        build_generator(generator)
    if path.parent.name == "own":  # the sizes come from the store; the schedule from the step count
        assert config.sizes_from_store and config.noise.anneal_end == 3 * config.steps // 4
    if path.parent.name == "fmnist":  # must fit the Fashion-MNIST tokenizer
        tokenizer = merge(TokenizerTrainConfig, str(path.parent / "tokenizer.yaml")).model
        assert (generator.codebook_size, generator.num_tokens, generator.num_classes) == (tokenizer.codebook_size, 64, 10)
        if not path.name.startswith("study"):
            assert generator.align.code_dim == tokenizer.code_dim


# Each ImageNet config's generator is a preset (rear.config.PRESETS, the one source of the official sizes)
# with only these fields changed: the paper's baseline switches the alignment off; TiTok-b64 has its own
# codes and grid.
IMAGENET_PRESETS = {
    "ar_l.yaml": ("rear-l", {"align": {"encode": False, "decode": False}}),
    "rear_s.yaml": ("rear-s", {}),
    "rear_b.yaml": ("rear-b", {}),
    "rear_l.yaml": ("rear-l", {}),
    "rear_alitok_b.yaml": ("alitok-b", {}),
    "rear_titok_b64.yaml": ("rear-b", {"codebook_size": 4096, "num_tokens": 64, "align": {"code_dim": 12}}),
}


def test_every_imagenet_config_is_its_preset():
    from rear.config import generator_preset

    imagenet = {p.name: p for p in CONFIGS if p.parent.name == "imagenet"}
    assert set(imagenet) == set(IMAGENET_PRESETS)
    for name, (preset, changes) in IMAGENET_PRESETS.items():
        assert merge(TrainConfig, str(imagenet[name])).generator == generator_preset(preset, **changes), name
