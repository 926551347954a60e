"""Sampling speed: static-KV-cache sampler vs full recompute, eager vs compiled, images/s and FLOP/s.

CPU (the issue's setting):  python benchmarks/bench_sampling.py [--compile]
GPU:                        python benchmarks/bench_sampling.py --preset rear-b --codes 1024 \
                                --classes 1000 --tokens 256 --batch 128 --device cuda --dtype bfloat16 --compile

FLOPs are the model's nominal forward FLOPs per fed token (every matmul, adaLN per token as the
plain model computes it, attention over the filled prefix) -- the work a straightforward cached
sampler must do. Peak is the best of square matmuls in the same dtype measured in this same run.
--compile also times the compiled one-token step (CUDA graphs on a GPU) and says whether it pays
here, i.e. whether `rear sample`'s default on this device type (rear.generator.sampling.compile_pays)
is the faster one.
"""
from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from rear.config import Backbone, generator_preset
from rear.generator import Generator, build_generator
from rear.config import SampleConfig
from rear.generator.sampling import compile_pays, generate_recompute


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
    for n in (512, 1024, 2048) if device.type == "cpu" else (2048, 4096, 8192):
        a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
        repeats = 5 if device.type == "cpu" else 50
        best = max(best, 2 * n**3 / seconds(lambda: a @ b, device, repeats))
    return best


def cpu_flags() -> str:
    """The CPU's vector extensions that decide matmul speed (AVX2, AVX-512, native bf16, AMX)."""
    try:
        flags = set(open("/proc/cpuinfo").read().split())
    except OSError:
        return platform.machine()
    names = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return "+".join(name for name in names if name in flags) or "no AVX2"


def machine(device: torch.device) -> str:
    """What a figure was measured on: the CPU's flags, or the GPU's name."""
    return cpu_flags() if device.type == "cpu" else torch.cuda.get_device_name(device)


def random_weights(model: Generator) -> Generator:
    """Every weight random: an adaLN-Zero init would make the blocks skip their math."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.02)
    return model


def flops_per_image(model: Generator, guided: bool) -> float:
    """Nominal forward FLOPs to sample one image with a KV cache."""
    c = model.config
    D = c.width
    if c.backbone is Backbone.LLAMA:  # qkv, out, SwiGLU (w1, w3, w2), the output layer; no adaLN
        hidden = model.blocks[0].mlp.w1.out_features
        per_token = c.depth * 2 * (3 * D * D + D * D + 3 * D * hidden) + 2 * D * c.codebook_size
    else:  # + adaLN's 6 D x D per block and the final 2 D x D
        hidden = int(D * c.mlp_ratio)
        per_token = c.depth * 2 * (3 * D * D + D * D + 2 * D * hidden + 6 * D * D)
        per_token += 2 * (2 * D * D + D * c.codebook_size)
    fed = c.num_tokens + model.prefix_length - 1  # the prefix (RAR: cls, class; Llama: class), t_0 .. t_{N-2}
    attention = sum(c.depth * 4 * (p + 1) * D for p in range(fed))
    return (2 if guided else 1) * (fed * per_token + attention)


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """The size, batch, device and dtype of a sampling benchmark (default: the issue's CPU setting)."""
    parser.add_argument("--preset", default="rear-cpu")
    parser.add_argument("--backbone", choices=[b.value for b in Backbone],
                        help="replace the preset's backbone (llama: LlamaGen's kind of model at the preset's size)")
    parser.add_argument("--codes", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])


def sampling_model(args: argparse.Namespace) -> tuple[Generator, torch.device, torch.Tensor]:
    """The random-weight model those arguments name, in eval mode on its device and dtype, and the
    batch's labels [B] (classes in turn)."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    backbone = {"backbone": Backbone(args.backbone)} if args.backbone else {}
    config = generator_preset(args.preset, codebook_size=args.codes, num_classes=args.classes, num_tokens=args.tokens,
                              **backbone)
    model = random_weights(build_generator(config)).to(device=device, dtype=getattr(torch, args.dtype)).eval()
    return model, device, torch.arange(args.batch, device=device) % args.classes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(parser)
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="also time the compiled one-token step")
    parser.add_argument("--skip-recompute", action="store_true")
    args = parser.parse_args()

    model, device, labels = sampling_model(args)
    config, dtype = model.config, getattr(torch, args.dtype)
    kwargs = dict(cfg_scale=args.cfg_scale, cfg_power=2.5)

    peak = matmul_peak(device, dtype)
    flops = flops_per_image(model, args.cfg_scale != 1) * args.batch
    print(f"device {device} ({machine(device)}, {torch.get_num_threads()} threads) {args.dtype}  preset {args.preset} "
          f"({config.backbone.value})  "
          f"width {config.width} depth {config.depth} heads {config.heads}  tokens {args.tokens}  "
          f"codes {args.codes}  batch {args.batch}  cfg {args.cfg_scale}")
    print(f"matmul peak              {peak / 1e9:9.1f} GFLOP/s")

    def report(name: str, t: float) -> None:
        print(f"{name:<24} {args.batch / t:9.2f} images/s   {flops / t / 1e9:7.1f} GFLOP/s "
              f"({flops / t / peak:.1%} of peak)", flush=True)

    cached = seconds(lambda: model.generate(labels, **kwargs), device, args.repeats)
    report("kv-cache sampler", cached)
    if args.compile:
        compiled = seconds(lambda: model.generate(labels, compiled=True, **kwargs), device, args.repeats)
        report("compiled one-token step", compiled)
        faster = compiled < cached
        default = "compiled" if compile_pays(device) else "eager"
        verdict = "agrees" if faster == compile_pays(device) else "DISAGREES: change compile_pays"
        print(f"compiled / eager         {cached / compiled:9.2f}x: compiling {'pays' if faster else 'does not pay'} "
              f"here; `rear sample` defaults to {default} on {device.type} ({verdict})")
    if not args.skip_recompute:
        full = seconds(lambda: generate_recompute(model, labels, SampleConfig(**kwargs)), device, max(1, args.repeats // 2))
        print(f"full-recompute sampler   {args.batch / full:9.2f} images/s")
        print(f"speed-up of the cache    {full / cached:9.2f}x")


if __name__ == "__main__":
    main()
