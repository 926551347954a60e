"""AliTok port: golden outputs of the official code (tests/fixtures/alitok_tokenizer), layout, loader errors.

The fixture holds no weights: both code bases fill every parameter with `seeded_fill`, so it holds only
inputs and outputs (benchmarks/make_alitok_tokenizer_fixture.py regenerates it).
"""
import json
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rear.compat.alitok import ALITOK_KEY, config_from_state, load_alitok
from rear.tokenizer.alitok import AliTok, AliTokConfig, TransformerSize
from rear.tokenizer.load import load_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "alitok_tokenizer"
# 16x16 RGB <-> 1 prefix + 2x2 grid tokens of 64 codes x 8; heads as load_alitok infers them (64 wide, at least 1)
TINY = AliTokConfig(encoder=TransformerSize(64, 2, 1), decoder=TransformerSize(128, 2, 2), patch_size=8, grid_size=2,
                    prefix_tokens=1, codebook_size=64, code_dim=8, class_rows=2)


def seeded_fill(model: torch.nn.Module) -> None:
    """Fill each parameter from a generator seeded by crc32(name): the same numbers for the same key anywhere.

    Matrices get std 1/sqrt(fan-in) so activations stay near unit scale; 1-D weights (LayerNorm gains) 1 +- 0.1;
    biases +- 0.02.
    """
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode())))
            if p.dim() >= 2:
                p.copy_(noise / p[0].numel() ** 0.5)
            elif name.endswith("weight"):
                p.copy_(1 + 0.1 * noise)
            else:
                p.copy_(0.02 * noise)


def tiny_alitok(config: AliTokConfig = TINY) -> AliTok:
    """A small AliTok with `seeded_fill` weights (the default init leaves the queries and tables zero)."""
    model = AliTok(config)
    seeded_fill(model)
    return model.eval()


@pytest.fixture(scope="module")
def expected():
    return load_file(FIXTURE / "expected.safetensors")


@pytest.fixture(scope="module")
def facts():
    return json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture(scope="module")
def tokenizer():
    with torch.device("meta"):
        model = AliTok()
    model.to_empty(device="cpu")  # no default init: seeded_fill writes every parameter
    seeded_fill(model)
    return model.eval()


def test_parameter_count_equals_the_official_model(facts):
    with torch.device("meta"):
        model = AliTok()
    assert sum(p.numel() for p in model.parameters()) == facts["parameters"] == 389_899_308
    assert len(model.state_dict()) == facts["state_dict_keys"]
    assert (model.codebook_size, model.code_dim, model.grid, model.num_tokens) == (4096, 32, (1, 273), 273)


@pytest.mark.slow
def test_golden_official_outputs(tokenizer, expected):
    """Seeded weights: the official code's latents, ids and decoded pixels."""
    e = expected
    images = e["images"].float() / 255  # [2, 3, 256, 256] in [0, 1]
    latents = []  # the encoder's output inside encode, caught rather than recomputed (a full-size pass)
    hook = tokenizer.encoder.register_forward_hook(lambda module, args, output: latents.append(output))
    ids = tokenizer.encode(images)
    hook.remove()
    torch.testing.assert_close(latents[0], e["latents"], atol=1e-4, rtol=0)  # [2, 32, 1, 273]
    assert torch.equal(ids, e["ids"])
    decoded = tokenizer.decode(e["ids"])
    # every 5th row and column: 5 is prime to the 16-pixel patch, so every in-patch offset is checked
    torch.testing.assert_close(decoded[:, :, ::5, ::5], e["decoded_every_5th"], atol=1e-4, rtol=0)
    assert decoded.shape == (2, 3, 256, 256) and 0 < decoded.min() and decoded.max() < 1
    assert torch.equal(tokenizer.embed(ids), tokenizer.quantize.embedding.weight[ids])  # raw rows, [2, 273, 32]


def test_shapes_and_bad_input():
    with torch.device("meta"):
        model = AliTok()
    images = torch.zeros(2, 3, 256, 256, device="meta")
    assert model.encoder(images, model.latent_tokens).shape == (2, 32, 1, 273)
    ids = torch.zeros(2, 273, dtype=torch.long, device="meta")
    assert model.embed(ids).shape == (2, 273, 32)
    assert model.latents(ids).shape == (2, 32, 1, 273)
    assert model.decoder(model.latents(ids)).shape == (2, 3, 256, 256)
    with pytest.raises(ValueError, match=r"images \[B, 3, 256, 256\]"):
        model.encode(torch.rand(1, 3, 224, 224))
    with pytest.raises(ValueError, match=r"token ids \[B, 273\]"):
        model.decode(torch.zeros(1, 256, dtype=torch.long))
    with pytest.raises(ValueError, match=r"\[0, 4095\]"):
        model.decode(torch.full((1, 273), 4096))


# ---- load_alitok on small files: every tensor but one is a stride-0 view, so torch.save stores one number
@pytest.fixture(scope="module")
def layout():
    """The released key -> shape layout, as cheap zero tensors."""
    with torch.device("meta"):
        shapes = {name: t.shape for name, t in AliTok().state_dict().items()}
    return {name: torch.zeros(()).expand(shape) for name, shape in shapes.items()}


def test_layout_marker(layout):
    """load_tokenizer tells AliTok from TiTok (nn.MultiheadAttention: ...attn.in_proj_weight) by this key."""
    assert ALITOK_KEY in layout


def test_load_alitok_round_trip(tmp_path, layout):
    codebook = torch.randn(4096, 32)
    torch.save(dict(layout, **{"quantize.embedding.weight": codebook}), tmp_path / "AliTok.pth")
    loaded = load_alitok(tmp_path / "AliTok.pth")
    assert torch.equal(loaded.quantize.embedding.weight, codebook) and not loaded.training
    assert not any(p.requires_grad for p in loaded.parameters())
    wrapped = {"model_state": {f"module.{k}": v for k, v in layout.items()}, "start_step": 5}
    torch.save(wrapped, tmp_path / "vae_step_5.pth")  # the training script's checkpoints
    assert load_alitok(tmp_path / "vae_step_5.pth").decoder.class_embedding.shape == (32, 1024)


@pytest.mark.parametrize(
    "keys, message",
    [
        ({"encoder.class_embedding": (1, 8), "decoder.mask_token": (1, 1, 8), "latent_tokens": (32, 8)}, "TiTok"),
        ({"encoder.conv_in.weight": (128, 3, 3, 3), "quantize.embedding.weight": (1024, 256)}, "MaskGIT-VQGAN"),
        ({"embeddings.weight": (5099, 768), "output.weight": (4096, 768)}, "AliTok AR generator"),
        ({"embeddings.weight": (1039, 8), "pos_embed": (1, 1040, 8), "lm_head.weight": (32, 8)}, "RAR/reAR generator"),
    ],
)
def test_load_alitok_names_look_alikes(tmp_path, keys, message):
    torch.save({k: torch.zeros(s) for k, s in keys.items()}, tmp_path / "other.pth")
    with pytest.raises(ValueError, match=f"looks like a {message}"):
        load_alitok(tmp_path / "other.pth")


def test_load_alitok_refuses_stage1_missing_extra_and_misshapen(tmp_path, layout):
    cases = {
        "stage-1": dict(layout, **{"decoder.ffn_aux.0.weight": torch.zeros(768, 1024, 1, 1)}),
        r"missing 4 AliTok keys, e.g. \['decoder\.transformer\.23\.mlp\.": {
            k: v for k, v in layout.items() if not k.startswith("decoder.transformer.23.mlp.")
        },
        r"missing 1 AliTok keys, e.g. \['latent_tokens'\]": {k: v for k, v in layout.items() if k != "latent_tokens"},
        r"1 keys AliTok lacks, e.g. \['decoder\.transformer\.24\.ln_1\.weight'\]": dict(
            layout, **{"decoder.transformer.24.ln_1.weight": torch.zeros(1024)}
        ),
        r"encoder\.conv_out\.weight has shape \(12, 768, 1, 1\), but the sizes read off the other tensors give "
        r"\(32, 768, 1, 1\)": dict(layout, **{"encoder.conv_out.weight": torch.zeros(12, 768, 1, 1)}),
        r"positional_embedding has 250 rows, not a square patch grid": dict(
            layout, **{"encoder.positional_embedding": torch.zeros(250, 768)}
        ),
    }
    for message, state in cases.items():
        torch.save(state, tmp_path / "bad.pth")
        with pytest.raises(ValueError, match=message):
            load_alitok(tmp_path / "bad.pth")
    with pytest.raises(FileNotFoundError):
        load_alitok(tmp_path / "absent.pth")


# ---- sizes read off the tensors: the release, and a tiny AliTok saved as a .pth state dict
def test_config_read_off_the_release_layout_is_the_default(layout):
    assert config_from_state(layout, "AliTok.pth") == AliTokConfig()
    assert AliTokConfig().image_size == 256 and AliTokConfig().num_tokens == 273
    without_last_block = {k: v for k, v in layout.items() if not k.startswith("decoder.transformer.23.")}
    assert config_from_state(without_last_block, "x").decoder == TransformerSize(1024, 23, 16)  # depth is counted


def test_tiny_alitok_shapes():
    model = tiny_alitok()
    assert (model.image_size, model.grid, model.codebook_size, model.code_dim) == (16, (1, 5), 64, 8)
    ids = model.encode(torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0)))
    assert ids.shape == (3, 5) and ids.unique().numel() > 1  # the seeded weights do not collapse the ids
    images = model.decode(ids)
    assert images.shape == (3, 3, 16, 16) and 0 < images.min() and images.max() < 1
    with pytest.raises(ValueError, match=r"images \[B, 3, 16, 16\]"):
        model.encode(torch.rand(1, 3, 256, 256))
    with pytest.raises(ValueError, match="width divisible by heads"):
        AliTokConfig(encoder=TransformerSize(100, 1, 3))


def test_tiny_alitok_round_trips_through_load_alitok_and_load_tokenizer(tmp_path):
    model = tiny_alitok()
    torch.save(model.state_dict(), tmp_path / "tiny.pth")
    images = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    ids = model.encode(images)
    for loaded in (load_alitok(tmp_path / "tiny.pth"), load_tokenizer(tmp_path / "tiny.pth")):
        assert isinstance(loaded, AliTok) and loaded.config == TINY
        assert torch.equal(loaded.encode(images), ids)
        assert torch.equal(loaded.decode(ids), model.decode(ids))
        assert loaded.fingerprint() == model.fingerprint()
