"""Both 1D tokenizers end to end through the `rear` command: TiTok with the RAR backbone, AliTok with the Llama one.

Each pipeline, tiny and on the CPU: an RGB class folder -> `rear pretokenize` -> `rear train` with reAR on
(context noise and both alignment heads) -> `rear sample` and `rear preview`. Then the mistakes a 1D
pipeline invites, each refused in one stderr line with exit code 2 and nothing written.
"""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from rear.cli import main
from rear.compat.titok import config_from_json
from rear.data.store import TokenStore
from rear.tokenizer.titok import VIT_SIZES, TiTok
from test_alitok import TINY as ALITOK_TINY
from test_alitok import tiny_alitok
from test_errors import fails
from test_titok import FIXTURE as TITOK_FIXTURE
from test_titok import TINY_SIZES, seeded_state

# generator fields shared by both pipelines: 2 classes, 2 blocks, both alignment heads (AlignConfig's defaults)
COMMON = {"num_classes": 2, "width": 32, "depth": 2, "heads": 2, "align": {"decode_layer": 1, "projection_dim": 16}}
PIPELINES = {  # name -> (image size, tokens, codes, code dim, generator fields that fit that tokenizer)
    # test_titok's tiny TiTok: 64x64 -> 10 tokens of 4096 codes x 12
    "titok": (64, 10, 4096, 12, {"backbone": "RAR", "extra_position_rows": 2, "extra_step_rows": 2}),
    # test_alitok's TINY: 16x16 -> 1 prefix + 2x2 grid tokens of 64 codes x 8; 2D RoPE over the 2x2 grid
    "alitok": (16, 5, 64, 8, {"backbone": "LLAMA", "prefix_tokens": 1, "mlp_multiple": 8}),
}


@pytest.fixture(scope="module", autouse=True)
def titok_sizes():
    """The tiny ViT sizes the TiTok fixture's config.json names (as tests/test_titok.py adds them)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, size in TINY_SIZES.items():
            patch.setitem(VIT_SIZES, name, size)
        yield


def save_titok(folder: Path) -> Path:
    """A tiny TiTok in the release's HF layout: model.safetensors and the official config.json."""
    with torch.device("meta"):
        model = TiTok(config_from_json(TITOK_FIXTURE / "config.json"))
    shapes = {name: t.shape for name, t in model.state_dict().items()}
    folder.mkdir()
    save_file(seeded_state(shapes), folder / "model.safetensors")
    shutil.copy(TITOK_FIXTURE / "config.json", folder / "config.json")
    return folder


def save_alitok(path: Path, other: bool = False) -> Path:
    """A tiny AliTok as a plain .pth state dict, like AliTok.pth; `other`: same sizes, another codebook."""
    state = tiny_alitok().state_dict()
    if other:
        state["quantize.embedding.weight"] = state["quantize.embedding.weight"].flip(0)
    torch.save(state, path)
    return path


def make_folder(root: Path, size: int, classes: int = 2, per_class: int = 6) -> Path:
    """classes x per_class RGB PNGs of size x size: a class-coloured band on dark noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
            image[size // 4 : size // 2] = (255, 200 * c, 255 - 200 * c)
            Image.fromarray(image).save(root / f"class{c}" / f"img{i:02d}.png")
    return root


def run_pipeline(root: Path, name: str) -> dict:
    """Folder -> store -> generator trained 3 steps with reAR -> 2 samples; returns the paths."""
    size, tokens, codes, code_dim, fields = PIPELINES[name]
    tokenizer = save_titok(root / "titok") if name == "titok" else save_alitok(root / "alitok.pth")
    folder, store, run, samples = make_folder(root / "images", size), root / "store", root / "run", root / "samples"
    main(["pretokenize", str(folder), "--tokenizer", str(tokenizer), "--out", str(store)])
    generator = {**COMMON, **fields, "codebook_size": codes, "num_tokens": tokens,
                 "align": {**COMMON["align"], "code_dim": code_dim}}
    config = {"store": str(store), "tokenizer": str(tokenizer), "out_dir": str(run), "generator": generator,
              "noise": {"anneal_end": 3}, "optim": {"warmup_steps": 1}, "steps": 3, "batch_size": 8,
              "grad_accumulation": 1, "bf16": False, "log_every": 1, "sample_every": 0, "samples_per_class": 0,
              "threads": 1}
    (root / "train.yaml").write_text(json.dumps(config))  # JSON is YAML
    main(["train", str(root / "train.yaml")])
    main(["sample", str(run / "checkpoint"), "--tokenizer", str(tokenizer), "--out", str(samples),
          "--num-samples", "2", "--cfg-scale", "2"])
    return {"tokenizer": tokenizer, "folder": folder, "store": store, "run": run, "samples": samples,
            "config": root / "train.yaml"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both pipelines, run once for every test here."""
    return {name: run_pipeline(tmp_path_factory.mktemp(name), name) for name in PIPELINES}


@pytest.mark.parametrize("name", PIPELINES)
def test_store_trains_and_samples(runs, name):
    size, tokens, codes, code_dim, _ = PIPELINES[name]
    paths = runs[name]
    manifest = TokenStore(paths["store"]).manifest
    assert (manifest["grid"], manifest["num_tokens"], manifest["codebook_size"], manifest["code_dim"]) == (
        [1, tokens], tokens, codes, code_dim)
    assert manifest["tokenizer"]["class"] == ("TiTok" if name == "titok" else "AliTok")
    assert (manifest["num_items"], manifest["num_classes"]) == (12, 2)
    log = [json.loads(line) for line in (paths["run"] / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all(np.isfinite(r["align"]) and r["align"] != 0 for r in log)  # both heads trained against the codebook
    saved = json.loads((paths["run"] / "checkpoint" / "config.json").read_text())
    assert saved["backbone"] == PIPELINES[name][4]["backbone"] and saved["align"]["encode"]
    for i in range(2):
        image = Image.open(paths["samples"] / "png" / f"{i:06d}.png")
        assert (image.size, image.mode) == ((size, size), "RGB")
    archive = np.load(paths["samples"] / "samples.npz")
    assert archive["arr_0"].shape == (2, size, size, 3) and archive["labels"].tolist() == [0, 1]


@pytest.mark.parametrize("name", PIPELINES)
def test_preview_decodes_the_1d_store(runs, name, tmp_path):
    size = PIPELINES[name][0]
    main(["preview", str(runs[name]["store"]), "--count", "3", "--out", str(tmp_path / "p.png")])
    image = Image.open(tmp_path / "p.png")  # 3 items x 2 views (as is, mirrored), 2 px padding
    assert image.size == (3 * (size + 2) + 2, 2 * (size + 2) + 2) and image.mode == "RGB"


def test_mismatches_are_one_line_and_write_nothing(runs, tmp_path, capsys):
    titok, alitok = runs["titok"], runs["alitok"]
    # a generator's weights given as the tokenizer
    weights = titok["run"] / "checkpoint" / "model.safetensors"
    err = fails(capsys, "pretokenize", alitok["folder"], "--tokenizer", weights, "--out", tmp_path / "store")
    assert "is not a tokenizer rear knows" in err and not (tmp_path / "store").exists()
    # the TiTok run's generator decoded by the AliTok tokenizer
    err = fails(capsys, "sample", titok["run"] / "checkpoint", "--tokenizer", alitok["tokenizer"],
                "--out", tmp_path / "samples", "--num-samples", 2)
    assert "has 10 tokens of 4096 codes but this tokenizer makes 5 tokens of 64 codes" in err
    assert not (tmp_path / "samples").exists()
    # the AliTok store with another AliTok of the same sizes: only the fingerprint tells them apart
    other = save_alitok(tmp_path / "other.pth", other=True)
    err = fails(capsys, "train", alitok["config"], f"tokenizer={other}", f"out_dir={tmp_path / 'run'}")
    assert f"{alitok['store']} was made by tokenizer {alitok['tokenizer']}" in err and "pretokenize again" in err
    assert not (tmp_path / "run").exists()


def test_the_tiny_alitok_is_the_one_test_alitok_pins():
    """The sizes this file's generator fields are written for."""
    assert (ALITOK_TINY.image_size, ALITOK_TINY.num_tokens, ALITOK_TINY.codebook_size, ALITOK_TINY.code_dim) == (
        PIPELINES["alitok"][:4])
