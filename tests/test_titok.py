"""TiTok port: golden outputs of the official code, the full TiTok-b64 layout, and the loader's errors.

tests/fixtures/titok_tiny holds what benchmarks/make_titok_tiny_fixture.py got from the official
bytedance/1d-tokenizer code: two 64x64 images, their ids and latents, the images decoded from those
ids (before any clamp), the config.json its PyTorchModelHubMixin wrote, and the official TiTok-b64
tensor names and shapes. No weights are stored: both code bases fill every tensor from a generator
seeded by the tensor's name (`seeded_state`), so the same names give the same weights.
"""
import json
import math
import shutil
import zlib
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from rear.compat.titok import SIGNATURE, config_from_json, config_from_state, load_titok
from rear.weights import tensor_names, weights_file
from rear.tokenizer.titok import VIT_SIZES, TiTok, TiTokConfig, ViTSize
from rear.weights import load_state

FIXTURE = Path(__file__).parent / "fixtures" / "titok_tiny"
# the sizes the fixture script adds to the release's width / depth / heads tables
TINY_SIZES = {"tiny": ViTSize(64, 2, 2), "mini": ViTSize(96, 3, 3)}


def seeded_tensor(name: str, shape: tuple[int, ...]) -> torch.Tensor:
    """A stand-in weight: N(0, 1) seeded by crc32(name); norm scales near 1, biases small, fan-in scaling."""
    noise = torch.randn(shape, generator=torch.Generator().manual_seed(zlib.crc32(name.encode())))
    if len(shape) == 1:
        return 1 + 0.1 * noise if name.endswith("weight") else 0.1 * noise
    return noise * math.prod(shape[1:]) ** -0.5


def seeded_state(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """Every tensor of a state dict, filled by `seeded_tensor`."""
    return {name: seeded_tensor(name, tuple(shape)) for name, shape in shapes.items()}


@pytest.fixture(scope="module")
def golden():
    return load_file(FIXTURE / "golden.safetensors")


@pytest.fixture(scope="module")
def facts():
    return json.loads((FIXTURE / "fixture.json").read_text())


@pytest.fixture(scope="module")
def tiny_sizes():
    with pytest.MonkeyPatch.context() as patch:
        for name, size in TINY_SIZES.items():
            patch.setitem(VIT_SIZES, name, size)
        yield


@pytest.fixture(scope="module")
def tiny(tiny_sizes):
    """(our tiny TiTok with the seeded weights, its state dict)."""
    model = TiTok(config_from_json(FIXTURE / "config.json"))
    state = seeded_state({name: t.shape for name, t in model.state_dict().items()})
    load_state(model, state, "seeded")
    return model.eval(), state


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory, tiny):
    """A folder laid out like the HF release: model.safetensors and the official config.json."""
    folder = tmp_path_factory.mktemp("titok_hf")
    save_file(tiny[1], folder / "model.safetensors")
    shutil.copy(FIXTURE / "config.json", folder / "config.json")
    return folder


def test_tiny_config_is_what_the_fixture_used(tiny, facts):
    config = tiny[0].config
    assert config == TiTokConfig(encoder=TINY_SIZES["tiny"], decoder=TINY_SIZES["mini"], num_tokens=10,
                                 codebook_size=4096, code_dim=12, image_size=64, patch_size=16)
    assert facts["tiny"]["parameters"] == sum(t.numel() for t in tiny[1].values())


def test_ids_latents_and_images_match_the_official_code(tiny, golden):
    model = tiny[0]
    ids = model.encode(golden["images"])
    assert torch.equal(ids, golden["ids"])
    assert torch.allclose(model.latents(ids), golden["latents"], atol=1e-6)
    with torch.no_grad():
        images = model.reconstruct(model.latents(golden["ids"]))
    assert images.shape == golden["decoded"].shape == (2, 3, 64, 64)
    assert (images - golden["decoded"]).abs().max() < 1e-4
    assert golden["decoded"].std() > 0.1  # the check is not vacuous
    assert torch.equal(model.decode(golden["ids"]), images.clamp(0, 1))


def test_shapes_and_unit_length_codes(tiny):
    model = tiny[0]
    assert (model.grid, model.num_tokens, model.codebook_size, model.code_dim) == ((1, 10), 10, 4096, 12)
    ids = model.encode(torch.rand(3, 3, 64, 64))
    assert ids.shape == (3, 10) and ids.dtype == torch.int64
    vectors = model.embed(ids)
    assert vectors.shape == (3, 10, 12)
    assert torch.allclose(vectors.norm(dim=-1), torch.ones(3, 10), atol=1e-6)
    images = model.decode(ids)
    assert images.shape == (3, 3, 64, 64) and images.min() >= 0 and images.max() <= 1


def test_bad_inputs_are_refused(tiny):
    model = tiny[0]
    with pytest.raises(ValueError, match=r"images \[B, 3, 64, 64\]"):
        model.encode(torch.rand(1, 3, 256, 256))
    with pytest.raises(ValueError, match=r"token ids \[B, 10\]"):
        model.decode(torch.zeros(1, 64, dtype=torch.long))
    with pytest.raises(ValueError, match="4095"):
        model.decode(torch.full((1, 10), 4096))


def test_full_size_b64_has_the_official_layout(facts):
    with torch.device("meta"):
        model = TiTok()
    state = model.state_dict()
    assert {name: list(t.shape) for name, t in state.items()} == facts["b64"]["tensors"]
    assert sum(p.numel() for p in model.parameters()) == facts["b64"]["parameters"]
    assert (model.image_size, model.grid, model.codebook_size, model.code_dim) == (256, (1, 64), 4096, 12)
    assert config_from_state(state, Path("b64.bin")) == TiTokConfig()


def test_release_config_json_gives_b64(tmp_path, facts):
    (tmp_path / "config.json").write_text(json.dumps(facts["b64"]["config"]))
    assert config_from_json(tmp_path / "config.json") == TiTokConfig()


def is_titok(path):
    """What rear.tokenizer.load's dispatch asks of a file: does it hold a legacy TiTok's tensor names?"""
    weights = weights_file(path)
    return weights.is_file() and set(SIGNATURE) <= tensor_names(weights)


def test_load_titok_reads_folder_safetensors_file_and_bin(tmp_path, tiny, hf_folder, golden):
    fingerprint = tiny[0].fingerprint()
    torch.save(tiny[1], tmp_path / "tokenizer_titok_tiny.bin")
    for path in (hf_folder, hf_folder / "model.safetensors", tmp_path / "tokenizer_titok_tiny.bin"):
        assert is_titok(path)
        model = load_titok(path)
        assert model.fingerprint() == fingerprint and not model.training
        assert torch.equal(model.encode(golden["images"]), golden["ids"])


def _config_variant(tmp_path, hf_folder, **vq_overrides):
    """A folder with the fixture's weights and a config.json that says something else."""
    raw = json.loads((FIXTURE / "config.json").read_text())
    raw["model"]["vq_model"].update(vq_overrides)
    tmp_path.mkdir()
    (tmp_path / "config.json").write_text(json.dumps(raw))
    (tmp_path / "model.safetensors").symlink_to(hf_folder / "model.safetensors")
    return tmp_path


def test_weights_that_do_not_fit_the_config_are_refused(tmp_path, tiny_sizes, hf_folder):
    with pytest.raises(ValueError, match=r"tensor '[a-z_.]*latent_token[a-z_]*' has shape"):
        load_titok(_config_variant(tmp_path / "a", hf_folder, num_latent_tokens=12))
    with pytest.raises(ValueError, match=r"unexpected \['decoder.transformer.2"):
        load_titok(_config_variant(tmp_path / "b", hf_folder, vit_dec_model_size="tiny"))
    with pytest.raises(ValueError, match="unknown TiTok ViT size 'huge'"):
        load_titok(_config_variant(tmp_path / "c", hf_folder, vit_enc_model_size="huge"))
    with pytest.raises(ValueError, match="legacy two-stage"):
        load_titok(_config_variant(tmp_path / "d", hf_folder, is_legacy=False))


def test_foreign_and_missing_files_are_refused(tmp_path, hf_folder):
    foreign = {
        "maskgit.bin": ({"encoder.conv_in.weight": torch.zeros(1), "quantize.embedding.weight": torch.zeros(4, 2)},
                        "MaskGIT-VQGAN"),
        "alitok.pth": ({"latent_tokens": torch.zeros(1), "encoder.transformer.0.attn.in_proj.weight": torch.zeros(1)},
                       "AliTok"),
        "stage1.bin": ({"latent_tokens": torch.zeros(1)}, "without the MaskGIT-VQGAN pixel decoder"),
        "other.bin": ({"x": torch.zeros(1)}, "no latent_tokens"),
    }
    for name, (state, looks) in foreign.items():
        torch.save(state, tmp_path / name)
        assert not is_titok(tmp_path / name)
        with pytest.raises(ValueError, match=f"not a TiTok checkpoint: .*{looks}"):
            load_titok(tmp_path / name)
    torch.save({"latent_tokens": torch.zeros(1), "pixel_decoder.conv_in.weight": torch.zeros(1)}, tmp_path / "cut.bin")
    with pytest.raises(ValueError, match=r"lacks \['encoder.positional_embedding'"):
        load_titok(tmp_path / "cut.bin")
    assert not is_titok(tmp_path / "absent")
    with pytest.raises(FileNotFoundError, match="not found"):
        load_titok(tmp_path / "absent")
    (tmp_path / "lone").mkdir()
    (tmp_path / "lone" / "model.safetensors").symlink_to(hf_folder / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="config.json not found"):
        load_titok(tmp_path / "lone")
