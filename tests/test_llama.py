"""The Llama-style backbone: AliTok's AR model reproduced, its RoPE layout, its presets."""
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rear.compat.alitok_ar import config_from_alitok, load_alitok_generator
from rear.config import generator_preset
from rear.generator import LlamaGenerator, build_generator
from rear.generator.llama import rotary_table

FIXTURE = Path(__file__).parent / "fixtures" / "alitok_ar_tiny"


def test_alitok_ar_logits_match_the_official_model():
    """benchmarks/make_alitok_ar_fixture.py ran the official ARModel (tiny, random weights)."""
    model = load_alitok_generator(FIXTURE / "model.safetensors").eval()
    expected = load_file(FIXTURE / "expected.safetensors")
    assert isinstance(model, LlamaGenerator)
    assert (model.config.width, model.config.depth, model.config.heads) == (32, 2, 2)
    assert (model.config.codebook_size, model.config.num_classes) == (64, 10)
    logits = model.logits(expected["tokens"], expected["labels"])  # [B, 273, K]
    assert (logits - expected["logits"]).abs().max() < 1e-4


def test_alitok_ar_cached_sampling_equals_teacher_forcing():
    model = load_alitok_generator(FIXTURE / "model.safetensors").eval()
    labels = torch.tensor([1, 4])
    tokens = model.generate(labels, cfg_scale=1.0, cfg_power=1.0, top_k=1)
    assert torch.equal(model.logits(tokens, labels).argmax(-1), tokens)


@pytest.mark.parametrize("size", ["b", "l", "xl"])
def test_preset_parameter_counts_match_the_release(size):
    expected = json.loads((FIXTURE / "config.json").read_text())["parameters"][f"alitok-{size}"]
    with torch.device("meta"):
        model = build_generator(generator_preset(f"alitok-{size}"))
    assert model.num_parameters() == expected
    if size == "b":
        assert round(expected / 1e6) == 177


def test_rotary_table_layout():
    config = generator_preset("llama-tiny", num_tokens=3 + 4, prefix_tokens=3)  # hd 32: 16 pairs
    table = rotary_table(config)  # [1 + N, hd/2, 2]
    assert table.shape == (8, 16, 2)
    assert table[0].abs().sum() == 0  # the class token turns to nothing
    cos, sin = table[..., 0], table[..., 1]
    # 1D prefix: token t turns pair j by t / 10000^(2j / hd)
    for t in range(3):
        assert torch.allclose(torch.atan2(sin[1 + t, 1], cos[1 + t, 1]), torch.tensor(t / 10000 ** (2 / 32)), atol=1e-6)
    # 2D grid (2 x 2, positions start at 3): first 8 pairs follow the row, last 8 the column
    angle = lambda row, pair: torch.atan2(sin[row, pair], cos[row, pair]) % (2 * math.pi)
    assert math.isclose(angle(4, 0), 3.0, abs_tol=1e-5) and math.isclose(angle(4, 8), 3.0, abs_tol=1e-5)
    assert math.isclose(angle(5, 0), 3.0, abs_tol=1e-5) and math.isclose(angle(5, 8), 4.0, abs_tol=1e-5)
    assert math.isclose(angle(6, 0), 4.0, abs_tol=1e-5) and math.isclose(angle(6, 8), 3.0, abs_tol=1e-5)


def test_a_non_square_grid_is_refused():
    with pytest.raises(ValueError, match="square grid"):
        generator_preset("llama-tiny", num_tokens=12)
    assert generator_preset("llama-tiny", num_tokens=12, prefix_tokens=12).num_tokens == 12  # 1D tokens


def test_a_rar_checkpoint_is_not_taken_for_alitok(tmp_path):
    rar = build_generator(generator_preset("rear-tiny", codebook_size=8, num_classes=2, num_tokens=4))
    save_file({k: v.contiguous() for k, v in rar.state_dict().items()}, tmp_path / "rar.safetensors")
    with pytest.raises(ValueError, match="not an AliTok AR generator.*reAR/RAR generator"):
        load_alitok_generator(tmp_path / "rar.safetensors")


def test_config_is_read_off_the_tensors():
    state = load_file(FIXTURE / "model.safetensors")
    config = config_from_alitok(state)
    assert (config.num_tokens, config.prefix_tokens) == (273, 17)
    assert not config.align.enabled


def test_checkpoint_round_trip_keeps_the_backbone(tmp_path):
    from rear.checkpoint import load_generator, save_generator

    model = load_alitok_generator(FIXTURE / "model.safetensors").eval()
    save_generator(model, tmp_path / "ckpt")
    assert json.loads((tmp_path / "ckpt" / "config.json").read_text())["backbone"] == "LLAMA"
    again = load_generator(tmp_path / "ckpt").eval()
    expected = load_file(FIXTURE / "expected.safetensors")
    assert isinstance(again, LlamaGenerator)
    assert torch.equal(again.logits(expected["tokens"], expected["labels"]), model.logits(expected["tokens"], expected["labels"]))


def test_convert_takes_an_alitok_checkpoint_alone(tmp_path, capsys):
    from rear.cli import main

    main(["convert", str(FIXTURE / "model.safetensors"), str(tmp_path / "ckpt")])
    assert "llama generator" in capsys.readouterr().out
    assert (tmp_path / "ckpt" / "model.safetensors").is_file()
