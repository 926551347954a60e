"""Regenerate tests/fixtures/alitok_tokenizer from the official AliTok code (github ali-vilab/alitok @093e957).

The official repository has no license, so nothing of it lives here: export it to a scratch folder and pass
that folder. It needs einops; torch comes from rear's venv.

    git -C <alitok repo> archive HEAD | tar -x -C /tmp/alitok
    OMP_NUM_THREADS=1 python benchmarks/make_alitok_tokenizer_fixture.py /tmp/alitok

Both code bases fill their weights with tests/test_alitok.py's `seeded_fill` (keyed by parameter name), so
the fixture holds only inputs and outputs: 2 uint8 images, the official latents and ids, and every 5th row
and column of the decoded images (the full float32 images would be 1.5 MB).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parents[1]


def test_module():
    spec = importlib.util.spec_from_file_location("test_alitok", ROOT / "tests" / "test_alitok.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_images() -> torch.Tensor:
    """Two 256x256 RGB uint8 images: smooth colour waves, and coloured blocks with noise."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:256, 0:256] / 255.0
    waves = np.stack([0.5 + 0.5 * np.sin(6 * x + 3 * y), y, 0.5 + 0.5 * np.cos(9 * x * y)])
    blocks = np.kron(rng.random((3, 8, 8)), np.ones((32, 32))) * 0.7 + 0.3 * rng.random((3, 256, 256))
    return torch.from_numpy((np.stack([waves, blocks]) * 255).round().astype(np.uint8))  # [2, 3, 256, 256]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("official", type=Path, help="folder holding the official code (modeling/alitok.py)")
    parser.add_argument("--out", type=Path, default=ROOT / "tests" / "fixtures" / "alitok_tokenizer")
    args = parser.parse_args()
    sys.path[:0] = [str(args.official), str(ROOT)]  # ROOT: rear, when run from a venv without it
    from modeling.alitok import AliTok  # the official model

    torch.set_num_threads(1)
    with torch.device("meta"):
        meta = AliTok()
    parameters = sum(p.numel() for p in meta.parameters())

    model = AliTok().eval()
    test_module().seeded_fill(model)
    images = make_images()
    with torch.no_grad():
        latents = model.encoder(images.float() / 255, model.latent_tokens)  # [2, 32, 1, 273]
        _, result = model.quantize(latents)
        ids = result["min_encoding_indices"].view(2, -1)  # [2, 273]
        decoded = model.decode_tokens(ids)  # [2, 3, 256, 256]

    # how far each id is from flipping: gap between the two nearest codes (float64)
    flat = latents.double().permute(0, 2, 3, 1).reshape(-1, latents.shape[1])
    distances = torch.cdist(flat, model.quantize.embedding.weight.double()).pow(2)
    nearest = distances.topk(2, largest=False)
    assert torch.equal(nearest.indices[:, 0], ids.view(-1)), "float32 argmin differs from float64"
    margin = (nearest.values[:, 1] - nearest.values[:, 0]).min().item()

    args.out.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "images": images,
            "latents": latents.contiguous(),
            "ids": ids.contiguous(),
            "decoded_every_5th": decoded[:, :, ::5, ::5].contiguous(),
        },
        args.out / "expected.safetensors",
    )
    facts = {
        "source": "github.com/ali-vilab/alitok @093e957, modeling/alitok.py AliTok(), weights by seeded_fill",
        "parameters": parameters,
        "state_dict_keys": len(meta.state_dict()),
        "distinct_ids": int(ids.unique().numel()),
        "smallest_squared_distance_gap": margin,
        "decoded_range": [decoded.min().item(), decoded.max().item()],
    }
    (args.out / "expected.json").write_text(json.dumps(facts, indent=1) + "\n")
    print(json.dumps(facts, indent=1))


if __name__ == "__main__":
    main()
