"""The compiled one-token step draws the same tokens as eager on this device, for each backbone.

    python benchmarks/compiled_equals_eager.py --device cuda

The test suite checks this on the CPU (tests/test_sampling.py); this is the same check where the
compiled step is the default: CUDA graphs, float32 weights, greedy decoding (top_k 1) with CFG.
"""
from __future__ import annotations

import argparse
import time

import torch

from bench_sampling import random_weights, sync
from rear.config import generator_preset
from rear.generator import build_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    failed = False
    for preset in ("rear-cpu", "llama-cpu"):
        torch.manual_seed(0)
        config = generator_preset(preset, codebook_size=512, num_classes=10, num_tokens=64)
        model = random_weights(build_generator(config)).to(device).eval()
        labels = torch.arange(16, device=device) % 10
        kwargs = dict(cfg_scale=4.0, cfg_power=2.5, top_k=1)
        eager = model.generate(labels, **kwargs)
        times = []
        for _ in range(3):  # the first call compiles, the next ones replay
            sync(device)
            start = time.perf_counter()
            compiled = model.generate(labels, compiled=True, **kwargs)
            sync(device)
            times.append(time.perf_counter() - start)
        same = torch.equal(eager, compiled)
        failed |= not same
        print(f"{preset}: compiled == eager: {same} ({(eager != compiled).sum().item()} of {eager.numel()} tokens "
              f"differ); calls {', '.join(f'{t:.2f}' for t in times)} s")
    raise SystemExit(1 if failed else 0)


if __name__ == "__main__":
    main()
