"""Sampling speed: static-KV-cache sampler vs full recompute, images/s and achieved FLOP/s.

CPU (the issue's setting):  python benchmarks/bench_sampling.py
GPU:                        python benchmarks/bench_sampling.py --preset rear-b --codes 1024 \
                                --classes 1000 --tokens 256 --batch 128 --device cuda --dtype bfloat16 --compile

FLOPs are the model's nominal forward FLOPs per fed token (every matmul, adaLN per token as the
plain model computes it, attention over the filled prefix) -- the work a straightforward cached
sampler must do. Peak is the best of square fp32/bf16 matmuls measured in this same run.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rear.config import generator_preset
from rear.generator import Generator, build_generator
from rear.generator.sampling import decode_one, generate, generate_recompute


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def seconds(fn, device: torch.device, repeats: int) -> float:
    """Median wall time of `fn()` over `repeats` runs after one warm-up run."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def matmul_peak(device: torch.device, dtype: torch.dtype) -> float:
    """Best FLOP/s of square matmuls at a few sizes."""
    best = 0.0
    for n in (512, 1024, 2048):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        repeats = 5 if device.type == "cpu" else 50
        best = max(best, 2 * n**3 / seconds(lambda: a @ b, device, repeats))
    return best


def flops_per_image(model: Generator, guided: bool) -> float:
    """Nominal forward FLOPs to sample one image with a KV cache."""
    c = model.config
    D, hidden = c.width, int(c.width * c.mlp_ratio)
    per_token = c.depth * 2 * (3 * D * D + D * D + 2 * D * hidden + 6 * D * D)
    per_token += 2 * (2 * D * D + D * c.codebook_size)
    fed = c.num_tokens + 1  # cls, class, t_0 .. t_{N-2}
    attention = sum(c.depth * 4 * (p + 1) * D for p in range(fed))
    return (2 if guided else 1) * (fed * per_token + attention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="rear-cpu")
    parser.add_argument("--codes", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--compile", action="store_true", help="torch.compile the one-token decode step")
    parser.add_argument("--skip-recompute", action="store_true")
    args = parser.parse_args()

    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    config = generator_preset(args.preset, codebook_size=args.codes, num_classes=args.classes, num_tokens=args.tokens)
    model = build_generator(config)
    with torch.no_grad():  # random weights everywhere: adaLN-Zero init would skip the blocks' math
        for p in model.parameters():
            p.normal_(0, 0.02)
    model = model.to(device=device, dtype=dtype).eval()
    labels = torch.arange(args.batch, device=device) % args.classes
    kwargs = dict(cfg_scale=args.cfg_scale, cfg_power=2.5)
    decode = decode_one
    if args.compile:
        decode = torch.compile(decode_one, mode="reduce-overhead" if device.type == "cuda" else None, fullgraph=True)

    peak = matmul_peak(device, dtype)
    cached = seconds(lambda: generate(model, labels, decode=decode, **kwargs), device, args.repeats)
    flops = flops_per_image(model, args.cfg_scale != 1) * args.batch
    print(f"device {device} {args.dtype}  preset {args.preset}  width {config.width} depth {config.depth} "
          f"heads {config.heads}  tokens {args.tokens}  codes {args.codes}  batch {args.batch}  cfg {args.cfg_scale}")
    print(f"matmul peak              {peak / 1e9:9.1f} GFLOP/s")
    print(f"kv-cache sampler         {args.batch / cached:9.2f} images/s   {flops / cached / 1e9:7.1f} GFLOP/s "
          f"({flops / cached / peak:.1%} of peak)")
    if not args.skip_recompute:
        full = seconds(lambda: generate_recompute(model, labels, **kwargs), device, max(1, args.repeats // 2))
        print(f"full-recompute sampler   {args.batch / full:9.2f} images/s")
        print(f"speed-up of the cache    {full / cached:9.2f}x")


if __name__ == "__main__":
    main()
