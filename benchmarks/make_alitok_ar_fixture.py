"""Write tests/fixtures/alitok_ar_tiny: a tiny AliTok AR model (random weights) and its logits.

The official AR model (ali-vilab/alitok, modeling/ar.py) is imported from a checkout given on the
command line; nothing of it is copied here. It needs einops and omegaconf:

    python benchmarks/make_alitok_ar_fixture.py /path/to/alitok [--out tests/fixtures/alitok_ar_tiny]

The fixture holds the tiny model's state dict, the inputs (tokens, labels), the teacher-forced
logits, and the parameter count of the released AliTok-B/L/XL AR models built on the meta device.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf
from safetensors.torch import save_file

TINY = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, codebook_size=64, classes=10)
RELEASED = {"b": (768, 24), "l": (1024, 24), "xl": (1280, 32)}  # configs/alitok_{b,l,xl}.yaml


def official_config(width: int, depth: int, heads: int, codebook_size: int, classes: int):
    return OmegaConf.create({"model": {
        "vq_model": {"codebook_size": codebook_size},
        "generator": {"hidden_size": width, "num_hidden_layers": depth, "num_attention_heads": heads,
                      "image_seq_len": 273, "condition_num_classes": classes, "dropout": 0.1,
                      "attn_drop": 0.1, "tok_dropout": 0.1},
    }})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("alitok", help="a checkout of github.com/ali-vilab/alitok")
    parser.add_argument("--out", default="tests/fixtures/alitok_ar_tiny")
    args = parser.parse_args()
    sys.path.insert(0, str(Path(args.alitok).resolve()))
    from modeling.ar import ARModel

    torch.manual_seed(0)
    t = TINY
    model = ARModel(official_config(t["hidden_size"], t["num_hidden_layers"], t["num_attention_heads"],
                                    t["codebook_size"], t["classes"])).eval()
    with torch.no_grad():  # the release zeroes its output layer at init: make every weight count
        for parameter in model.parameters():
            parameter.normal_(0, 0.3)
    tokens = torch.randint(0, t["codebook_size"], (3, 273))
    labels = torch.tensor([0, 7, t["classes"]])  # the last row is the null class
    with torch.no_grad():
        logits = model(tokens, model.preprocess_condition(labels.clone()))  # [B, 274, K]
    counts = {}
    for size, (width, depth) in RELEASED.items():
        with torch.device("meta"):
            counts[f"alitok-{size}"] = sum(p.numel() for p in ARModel(official_config(width, depth, 16, 4096, 1000)).parameters())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "model.safetensors")
    save_file({"tokens": tokens, "labels": labels, "logits": logits[:, :-1].contiguous()}, out / "expected.safetensors")
    (out / "config.json").write_text(json.dumps({"tiny": t, "parameters": counts}, indent=2) + "\n")
    print(f"wrote {out}: logits {tuple(logits.shape)}, released parameter counts {counts}")


if __name__ == "__main__":
    main()
