"""Training-step speed: forward + backward + AdamW with the reAR loss (noisy context + alignment).

CPU (the issue's setting):  python benchmarks/bench_train.py [--compile]
GPU:                        python benchmarks/bench_train.py --preset rear-b --codes 1024 --classes 1000 \
                                --tokens 256 --batch 64 128 256 --device cuda --compile

Prints, per batch size, tokens/s, the achieved FLOP/s as a fraction of the matmul peak measured in the
same run (training FLOPs taken as 3x the forward matmul FLOPs) and peak memory (max RSS on CPU, max
allocated on CUDA); with --compile also the step under torch.compile (the trainer's compile=true) and
its speed over eager. The optimizer is rear's (fused AdamW).
"""
from __future__ import annotations

import argparse
import resource
from typing import Callable

import torch
import torch.nn.functional as F

from bench_sampling import machine, matmul_peak, seconds
from rear import precision
from rear.config import GeneratorConfig, OptimConfig, generator_preset
from rear.generator import Generator, build_generator
from rear.optim import make_optimizer
from rear.regularizers import corrupt_context


def forward_flops_per_token(model: Generator) -> float:
    """Matmul FLOPs of one training position: blocks, adaLN, head, alignment heads, attention."""
    c = model.config
    D, hidden, T = c.width, int(c.width * c.mlp_ratio), c.num_tokens + 2
    flops = c.depth * 2 * (3 * D * D + D * D + 2 * D * hidden + 6 * D * D + 2 * T * D)
    flops += 2 * (2 * D * D + D * c.codebook_size)
    a = c.align
    heads = int(a.encode) + int(a.decode)
    flops += heads * 2 * (D * a.projection_dim + a.projection_dim**2 + a.projection_dim * a.code_dim)
    return flops


def add_train_args(parser: argparse.ArgumentParser) -> None:
    """The size, batch and device of a training benchmark (default: the issue's CPU setting)."""
    parser.add_argument("--preset", default="rear-cpu")
    parser.add_argument("--codes", type=int, default=512)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--code-dim", type=int, default=256)
    parser.add_argument("--projection", type=int, default=2048, help="alignment heads' hidden width (the paper's 2048)")
    parser.add_argument("--batch", type=int, nargs="+", default=[32], help="one or more batch sizes")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--device", default="cpu")


def train_config(args: argparse.Namespace) -> GeneratorConfig:
    return generator_preset(args.preset, codebook_size=args.codes, num_classes=args.classes, num_tokens=args.tokens,
                            align={"code_dim": args.code_dim, "projection_dim": args.projection})


def training_batch(args: argparse.Namespace, device: torch.device, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fixed random batch: tokens [B, N], labels [B] and the tokens' vectors [B, N, Z] in a random codebook."""
    codebook = torch.randn(args.codes, args.code_dim, device=device)
    tokens = torch.randint(0, args.codes, (batch, args.tokens), device=device)
    labels = torch.randint(0, args.classes, (batch,), device=device)
    return tokens, labels, F.embedding(tokens, codebook)


def training_step(model: Generator, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor], ratio: float,
                  bf16: bool, compiled: bool = False) -> Callable[[], None]:
    """One reAR step of `model` on `batch` per call: a fresh noisy context (bound `ratio`), the losses
    (under bf16 autocast when `bf16` and native; through torch.compile when `compiled`, as the trainer's
    compile=true), backward, gradient clipping, AdamW."""
    tokens, labels, features = batch
    optimizer = make_optimizer(model, OptimConfig())
    net = torch.compile(model) if compiled else model

    def step() -> None:
        context, corrupted = corrupt_context(tokens, ratio, model.config.codebook_size)
        with precision.autocast(tokens.device, bf16):
            losses = net(tokens, labels, features, context, corrupted, checked=True)
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(parser)
    parser.add_argument("--no-bf16", action="store_true",
                        help="train in float32 (bf16 autocast is used only where native: rear.precision)")
    parser.add_argument("--compile", action="store_true", help="also time the step under torch.compile")
    args = parser.parse_args()

    device = torch.device(args.device)
    config = train_config(args)
    bf16 = not args.no_bf16 and precision.native_bf16(device)
    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(device, dtype)
    print(f"device {device} ({machine(device)}, {torch.get_num_threads()} threads)  "
          f"{'bf16 autocast' if bf16 else 'float32'}  preset {args.preset}  width {config.width} depth {config.depth} "
          f"heads {config.heads}  tokens {args.tokens}  codes {args.codes}  batches {args.batch}")
    print(f"matmul peak ({dtype})   {peak / 1e9:9.1f} GFLOP/s")
    for batch in args.batch:
        times = {}
        for compiled in (False, True) if args.compile else (False,):
            torch.manual_seed(0)
            model = build_generator(config).to(device).train()
            step = training_step(model, training_batch(args, device, batch), 0.5, not args.no_bf16, compiled)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            try:
                t = times[compiled] = seconds(step, device, args.repeats)
            except torch.OutOfMemoryError:
                print(f"batch {batch:5d} {'compiled' if compiled else 'eager':8s} out of memory")
                break
            memory = (torch.cuda.max_memory_allocated() if device.type == "cuda"
                      else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
            flops = 3 * forward_flops_per_token(model) * batch * (args.tokens + 2)
            print(f"batch {batch:5d} {'compiled' if compiled else 'eager':8s} {t * 1e3:9.1f} ms  "
                  f"{batch * args.tokens / t:9.0f} tokens/s  {flops / t / 1e9:8.1f} GFLOP/s ({flops / t / peak:.1%} of peak)"
                  f"  peak memory {memory / 2**20:7.0f} MiB", flush=True)
            del model, step
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if len(times) == 2:
            print(f"batch {batch:5d} compiled / eager {times[False] / times[True]:.2f}x")


if __name__ == "__main__":
    main()
