"""Regenerate tests/fixtures/titok_tiny from the official TiTok code (github bytedance/1d-tokenizer @942a96f).

Nothing of the official code lives here (it is Apache-2.0, but we keep our own): export it to a scratch
folder and pass that folder. It needs einops, omegaconf and huggingface_hub; torch comes from rear's venv.

    git -C <1d-tokenizer repo> archive HEAD modeling configs | tar -x -C /tmp/titok
    OMP_NUM_THREADS=1 python benchmarks/make_titok_tiny_fixture.py /tmp/titok

At import time (in memory, the scratch files stay untouched) this script skips modeling/modules/__init__.py
(it pulls in the training losses: torchvision, diffusion), stubs accelerate (only its clustering VQ uses
it) and adds two tiny ViT sizes to blocks.py's width / depth / heads tables (tests/test_titok.py
TINY_SIZES). The tiny TiTok reads 64x64 images (a 4x4 patch grid; the f16 pixel decoder is
convolutional, so it then gives 64x64 images) into 10 tokens. Both code bases fill every tensor with
tests/test_titok.py's `seeded_state`, so the fixture holds only inputs, outputs and layout facts.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]
TABLE_ROWS = {'"small": 512,': '"small": 512, "tiny": 64, "mini": 96,',  # widths
              '"small": 8,': '"small": 8, "tiny": 2, "mini": 3,'}  # depths and heads (equal for small)


def test_module():
    spec = importlib.util.spec_from_file_location("test_titok", ROOT / "tests" / "test_titok.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def import_official(root: Path) -> type:
    """The official TiTok class, with the import-time adjustments described above."""
    sys.path[:0] = [str(root), str(ROOT)]  # ROOT: rear, when run from a venv without it
    operations = types.ModuleType("accelerate.utils.operations")
    operations.gather = lambda tensor: tensor
    sys.modules.update({"accelerate": types.ModuleType("accelerate"),
                        "accelerate.utils": types.ModuleType("accelerate.utils"),
                        "accelerate.utils.operations": operations})
    modules = types.ModuleType("modeling.modules")
    modules.__path__ = [str(root / "modeling" / "modules")]
    sys.modules["modeling.modules"] = modules
    path = root / "modeling" / "modules" / "blocks.py"
    source = path.read_text()
    for row, extended in TABLE_ROWS.items():
        assert source.count(row) in (2, 4), f"{path} changed: its size tables no longer hold {row}"
        source = source.replace(row, extended)
    blocks = types.ModuleType("modeling.modules.blocks")
    blocks.__file__ = str(path)
    sys.modules["modeling.modules.blocks"] = blocks
    exec(compile(source, str(path), "exec"), blocks.__dict__)
    from modeling.titok import TiTok

    return TiTok


def make_images() -> torch.Tensor:
    """Two smooth 64x64 RGB images in [0, 1] (bilinear-upsampled 8x8 noise), on the uint8 grid."""
    coarse = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    images = F.interpolate(coarse, size=64, mode="bilinear", align_corners=False)
    return (images * 255).round() / 255  # [2, 3, 64, 64]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="folder holding the official code (modeling/titok.py, configs/)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "titok_tiny")
    args = parser.parse_args()
    TiTok = import_official(args.official)
    seeded_state = test_module().seeded_state
    torch.set_num_threads(1)

    b64 = OmegaConf.load(args.official / "configs" / "infer" / "TiTok" / "titok_b64.yaml")
    with torch.device("meta"):
        full = TiTok(b64)
    tiny_config = OmegaConf.merge(b64, {
        "model": {"vq_model": {"vit_enc_model_size": "tiny", "vit_dec_model_size": "mini", "num_latent_tokens": 10}},
        "dataset": {"preprocessing": {"crop_size": 64}}})
    model = TiTok(tiny_config).eval()
    state = seeded_state({name: t.shape for name, t in model.state_dict().items()})
    model.load_state_dict(state)

    images = make_images()
    with torch.no_grad():
        latents = model.encoder(pixel_values=images, latent_tokens=model.latent_tokens)  # [2, 12, 1, 10]
        _, result = model.quantize(latents)
        ids = result["min_encoding_indices"].view(2, -1)  # [2, 10]
        codes = model.quantize.get_codebook_entry(ids.reshape(-1))  # [20, 12], unit rows
        decoded = model.decode_tokens(ids)  # [2, 3, 64, 64], before any clamp
    # how far each id is from flipping: gap between the two nearest unit codes (float64)
    z = F.normalize(latents.double().flatten(2).transpose(1, 2).reshape(-1, 12), dim=-1)
    distances = torch.cdist(z, F.normalize(model.quantize.embedding.weight.double(), dim=-1)).pow(2)
    nearest = distances.topk(2, largest=False)
    assert torch.equal(nearest.indices[:, 0], ids.view(-1)), "float32 argmin differs from float64"

    args.out.mkdir(parents=True, exist_ok=True)
    save_file({"images": images, "ids": ids.contiguous(),
               "latents": codes.view(2, 1, 10, 12).permute(0, 3, 1, 2).contiguous(),  # [2, 12, 1, 10]
               "decoded": decoded.contiguous()}, args.out / "golden.safetensors")
    with tempfile.TemporaryDirectory() as folder:  # the config.json the release's hub mixin writes
        model.save_pretrained(folder)
        (args.out / "config.json").write_text((Path(folder) / "config.json").read_text())
    facts = {
        "source": "github.com/bytedance/1d-tokenizer @942a96f, configs/infer/TiTok/titok_b64.yaml",
        "b64": {"parameters": sum(p.numel() for p in full.parameters()),
                "tensors": {name: list(t.shape) for name, t in full.state_dict().items()},
                "config": OmegaConf.to_container(b64)},
        "tiny": {"parameters": sum(t.numel() for t in state.values()),
                 "min_id_margin": (nearest.values[:, 1] - nearest.values[:, 0]).min().item()},
    }
    (args.out / "fixture.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps(facts["tiny"]), "b64 parameters:", facts["b64"]["parameters"])


if __name__ == "__main__":
    main()
