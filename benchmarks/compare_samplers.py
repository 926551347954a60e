"""Our sampler beside the official reAR sampler (KV cache repaired) and LlamaGen's static-cache sampler.

    python benchmarks/compare_samplers.py --official PATH/TO/reAR --llamagen PATH/TO/LlamaGen [--modes eager compiled]

At one size (default: the issue's CPU setting, width 256, depth 6, 4 heads, 64 tokens, 512 codes,
batch 32, CFG on), in one run, each timed by the median of --repeats calls after a warm-up, in each of
--modes (then the best mode of each side against ours at its best): images/s,
the achieved nominal GFLOP/s (each model's own forward FLOPs of cached sampling) and its share of the
matmul peak measured in the same run. The official model holds our weights; LlamaGen's GPT (no adaLN,
SwiGLU) has random weights at the same width, depth, heads, tokens and codes. Their code is read from
the checkouts given (benchmarks/peers.py); either may be left out. `--backbone llama` makes ours the Llama
backbone (class-token prefix, RMSNorm, SwiGLU, RoPE: LlamaGen's kind of model, plus AliTok's QK-norm and
biases) at the same size: the like-for-like comparison with LlamaGen.
"""
from __future__ import annotations

import argparse

import torch

from bench_sampling import add_model_args, flops_per_image, machine, matmul_peak, sampling_model, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", help="root of a reAR checkout (github QY-H00/reAR)")
    parser.add_argument("--llamagen", help="root of a LlamaGen checkout (github FoundationVision/LlamaGen)")
    add_model_args(parser)
    parser.add_argument("--cfg-scale", type=float, default=4.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--modes", nargs="+", choices=["eager", "compiled"], default=["eager"],
                        help="compiled: ours with its compiled step, LlamaGen compiled as its sample_c2i.py --compile "
                        "does (reduce-overhead on a GPU); the official release has no compiled sampler (eager only)")
    args = parser.parse_args()

    model, device, labels = sampling_model(args)
    if args.official and model.config.backbone.value != "rar":
        parser.error("--official holds the RAR backbone's weights: leave it out with --backbone llama")
    config, dtype = model.config, getattr(torch, args.dtype)
    guided = args.cfg_scale != 1
    peak = matmul_peak(device, dtype)
    print(f"device {device} ({machine(device)}, {torch.get_num_threads()} threads)  {args.dtype}  {config.backbone.value} backbone  "
          f"width {config.width} depth {config.depth} heads {config.heads}  "
          f"tokens {args.tokens}  codes {args.codes}  batch {args.batch}  cfg {args.cfg_scale}")
    print(f"matmul peak {peak / 1e9:.1f} GFLOP/s")
    rows = []

    def row(name: str, fn, flops: float) -> float:
        t = seconds(fn, device, args.repeats)
        rate = flops * args.batch / t
        rows.append((name, args.batch / t, rate))
        print(f"{name:<40} {args.batch / t:8.2f} images/s  {rate / 1e9:7.1f} GFLOP/s  {rate / peak:6.1%} of peak", flush=True)
        return t

    official = llamagen = None
    if args.official:
        from peers import official_model, official_sample

        official = official_model(args.official, model).eval()
    if args.llamagen:
        from peers import llamagen_flops_per_image, llamagen_model, llamagen_sample

        llamagen, module = llamagen_model(args.llamagen, config.width, config.depth, config.heads, args.tokens,
                                          args.codes, args.classes)
        llamagen = llamagen.to(device=device, dtype=dtype).eval()
    best: dict[str, float] = {}  # the fastest mode of each side, seconds per batch
    for mode in args.modes:
        compiled = mode == "compiled"
        t = row(f"rear {config.backbone.value} (static KV cache, {mode})",
                lambda: model.generate(labels, cfg_scale=args.cfg_scale, cfg_power=2.5, compiled=compiled),
                flops_per_image(model, guided))
        best["rear"] = min(best.get("rear", t), t)
        if official is not None and not compiled:  # the release has no compiled sampler
            t = row("official reAR (KV cache repaired)", lambda: official_sample(official, labels, args.cfg_scale, 2.5),
                    flops_per_image(model, guided))
            best["official"] = t
        if llamagen is not None:
            run = llamagen
            if compiled:  # as its sample_c2i.py --compile
                run = torch.compile(llamagen, mode="reduce-overhead" if device.type == "cuda" else None, fullgraph=True)
            t = row(f"LlamaGen (gpt-fast static cache, {mode})",
                    lambda: llamagen_sample(run, module, labels, args.tokens, args.cfg_scale),
                    llamagen_flops_per_image(llamagen, guided))
            best["LlamaGen"] = min(best.get("LlamaGen", t), t)
    for peer in ("official", "LlamaGen"):
        if peer in best:
            print(f"  rear / {peer}, each at its best of {', '.join(args.modes)}: {best[peer] / best['rear']:.2f}x images/s")

if __name__ == "__main__":
    main()
