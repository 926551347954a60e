"""Where a CPU decode step's time goes besides its FLOPs: fixed per-step cost, one-query attention,
the step's matmul shapes alone.

    python benchmarks/decode_overhead.py

1. ms per decode step of the sampler at the issue's setting and at width 16 (same depth, heads,
   tokens, batch: the same ~290 ops with almost no arithmetic, i.e. the fixed cost of a step);
2. one-query SDPA over a 33-key prefix at batch x heads = 256, at head width 64 and at 4;
3. each linear of a step alone (M = 2 x batch rows, weights hot in cache) as a fraction of the peak.
"""
from __future__ import annotations

import argparse
import dataclasses

import torch
import torch.nn.functional as F

from bench_sampling import add_model_args, cpu_flags, matmul_peak, random_weights, sampling_model, seconds
from rear.generator import build_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    args = parser.parse_args()
    model, device, labels = sampling_model(args)
    c = model.config
    print(f"cpu ({cpu_flags()}, {torch.get_num_threads()} threads) float32  width {c.width} depth {c.depth} "
          f"heads {c.heads}  tokens {c.num_tokens}  batch {args.batch}, CFG on")
    peak = matmul_peak(device, torch.float32)
    print(f"matmul peak                        {peak / 1e9:7.1f} GFLOP/s")

    thin = random_weights(build_generator(dataclasses.replace(c, width=16))).eval()
    for name, m in (("sampler", model), ("the same at width 16", thin)):
        t = seconds(lambda: m.generate(labels, cfg_scale=4.0, cfg_power=2.5), device, 3)
        print(f"{name:<34} {t / c.num_tokens * 1e3:7.2f} ms per step")

    R, H, filled = 2 * args.batch, c.heads, 33
    for hd in (c.width // c.heads, 4):
        q, k, v = torch.randn(R, H, 1, hd), torch.randn(R, H, 66, hd), torch.randn(R, H, 66, hd)
        t = seconds(lambda: F.scaled_dot_product_attention(q, k[:, :, :filled], v[:, :, :filled]), device, 200)
        print(f"one-query SDPA, {R * H} (row, head) x {filled} keys x hd {hd:<3} {t * 1e6:7.0f} us")

    hidden = int(c.width * c.mlp_ratio)
    shapes = {"qkv": (c.width, 3 * c.width), "proj": (c.width, c.width), "fc1": (c.width, hidden),
              "fc2": (hidden, c.width), "lm_head": (c.width, c.codebook_size)}
    for name, (k_in, n_out) in shapes.items():
        x, w, b = torch.randn(R, k_in), torch.randn(n_out, k_in), torch.randn(n_out)
        t = seconds(lambda: F.linear(x, w, b), device, 200)
        flops = 2 * R * k_in * n_out
        print(f"linear {name:<8} [{R}, {k_in}] x [{k_in}, {n_out}]  {flops / t / 1e9:7.1f} GFLOP/s "
              f"({flops / t / peak:.0%} of peak)")


if __name__ == "__main__":
    main()
