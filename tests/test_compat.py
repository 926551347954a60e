"""Official-release checkpoints and our own checkpoints."""
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import random_generator
from rear.checkpoint import load_generator, save_generator
from rear.compat import load_official_generator

FIXTURE = Path(__file__).parent / "fixtures" / "official_tiny"

OFFICIAL_YAML = """
model:
  vq_model: {{codebook_size: 32, token_size: 8}}
  generator:
    hidden_size: 64
    num_hidden_layers: 2
    num_attention_heads: 2
    intermediate_size: 256
    dropout: 0.1
    attn_drop: 0.1
    image_seq_len: 16
    condition_num_classes: 5
    guidance_scale: 3.0
    guidance_scale_pow: 2.5
    transition_alignment: {heads}
    projection_dim: 64
    z_dim: 8
    encode_align_layer_idx: 0
    decode_align_layer_idx: 1
"""


def test_golden_official_outputs():
    """Weights run through the official implementation (tests/fixtures/official_tiny) give its numbers."""
    model = load_official_generator(FIXTURE / "model.safetensors", FIXTURE / "config.yaml").eval()
    e = load_file(FIXTURE / "expected.safetensors")
    assert model.pos_embed.shape[1] == 16 + 1024 and model.timesteps_embeddings.shape[1] == 16 + 100
    torch.testing.assert_close(model.logits(e["tokens"], e["labels"]), e["logits"], atol=1e-4, rtol=0)
    noisy = model.training_losses(e["tokens"], e["labels"], e["code_vectors"], e["context"])
    assert torch.equal(e["context"] != e["tokens"], e["corrupted"].bool())
    clean = model.training_losses(e["tokens"], e["labels"], e["code_vectors"])
    for name in ("ce", "align", "total"):
        torch.testing.assert_close(noisy[name], e[name], atol=1e-4, rtol=0)
        torch.testing.assert_close(clean[name], e[f"{name}_clean"], atol=1e-4, rtol=0)
    greedy = model.generate(e["labels_gen"], cfg_scale=3.0, cfg_power=2.5, top_k=1)
    assert torch.equal(greedy, e["greedy_cfg"])
    assert torch.equal(model.generate(e["labels_gen"], cfg_scale=1.0, cfg_power=2.5, top_k=1), e["greedy_nocfg"])
    assert not torch.equal(e["greedy_cfg"], e["greedy_nocfg"])  # the fixture does exercise CFG


def official_layout(tmp_path, heads=True, extra=(1024, 100), prefix=""):
    """A synthetic official checkpoint (.bin, over-sized tables) and YAML; returns paths and source model."""
    source = random_generator(seed=4, std=0.1, num_tokens=16, align={"code_dim": 8, "decode_layer": 1, "encode": heads, "decode": heads})
    state = source.state_dict()
    D = state["pos_embed"].shape[-1]
    for name, rows in (("pos_embed", 16 + extra[0]), ("target_aware_pos_embed", 16 + extra[0]), ("timesteps_embeddings", 16 + extra[1])):
        table = torch.randn(1, rows, D)
        table[:, : 18] = state[name][:, :18]
        state[name] = table
    torch.save({prefix + k: v for k, v in state.items()}, tmp_path / "rear.bin")
    (tmp_path / "rear.yaml").write_text(OFFICIAL_YAML.format(heads=heads))
    return tmp_path / "rear.bin", tmp_path / "rear.yaml", source


@pytest.mark.parametrize("heads", [True, False])
def test_official_layout_state_dict_and_yaml(tmp_path, heads):
    ckpt, yaml, source = official_layout(tmp_path, heads=heads, prefix="module.")
    model = load_official_generator(ckpt, yaml).eval()
    assert model.config.extra_position_rows == 1024 and model.config.extra_step_rows == 100
    assert model.config.align.enabled == heads and model.config.align.decode_layer == 1
    tokens, labels = torch.randint(0, 32, (2, 16)), torch.tensor([1, 5])
    torch.testing.assert_close(model.logits(tokens, labels), source.logits(tokens, labels))


def test_official_checkpoint_that_does_not_fit_its_config(tmp_path):
    ckpt, yaml, _ = official_layout(tmp_path)
    yaml.write_text(yaml.read_text().replace("intermediate_size: 256", "intermediate_size: 128"))
    with pytest.raises(ValueError, match=r"'blocks.0.mlp.fc1.weight' has shape \(256, 64\)"):
        load_official_generator(ckpt, yaml)


def test_official_tables_too_small_are_refused(tmp_path):
    ckpt, yaml, _ = official_layout(tmp_path)
    yaml.write_text(yaml.read_text().replace("image_seq_len: 16", "image_seq_len: 1039"))
    with pytest.raises(ValueError, match="at least 2 rows"):
        load_official_generator(ckpt, yaml)


class Evil:
    """An arbitrary object: a weights_only load must not unpickle it."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"model": Evil()}, tmp_path / "evil.bin")
    (tmp_path / "c.yaml").write_text(OFFICIAL_YAML.format(heads=True))
    with pytest.raises(ValueError, match="evil.bin cannot be read as tensors without running pickled code"):
        load_official_generator(tmp_path / "evil.bin", tmp_path / "c.yaml")


def test_bad_yaml_is_named(tmp_path):
    ckpt, _, _ = official_layout(tmp_path)
    (tmp_path / "bad.yaml").write_text("model: {}\n")
    with pytest.raises(ValueError, match="not an official reAR config"):
        load_official_generator(ckpt, tmp_path / "bad.yaml")


def test_checkpoint_round_trip(tmp_path):
    model = random_generator(seed=2)
    save_generator(model, tmp_path / "ckpt")
    loaded = load_generator(tmp_path / "ckpt").eval()
    assert loaded.config == model.config
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert torch.equal(a, b), name
    labels = torch.tensor([0, 1])
    draw = lambda m: m.generate(labels, cfg_scale=2.0, cfg_power=1.0, rng=torch.Generator().manual_seed(0))
    assert torch.equal(draw(model), draw(loaded))


def test_checkpoint_overwrite_replaces_and_leaves_no_staging(tmp_path):
    save_generator(random_generator(seed=1), tmp_path / "ckpt")
    second = random_generator(seed=2)
    save_generator(second, tmp_path / "ckpt")
    assert torch.equal(load_generator(tmp_path / "ckpt").lm_head.weight, second.lm_head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_checkpoint_with_wrong_shapes_is_refused(tmp_path):
    save_generator(random_generator(), tmp_path / "ckpt")
    state = load_file(tmp_path / "ckpt" / "model.safetensors")
    state["lm_head.weight"] = torch.zeros(31, 64)
    save_file(state, tmp_path / "ckpt" / "model.safetensors")
    with pytest.raises(ValueError, match="'lm_head.weight' has shape"):
        load_generator(tmp_path / "ckpt")


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors"):
        load_generator(tmp_path)
