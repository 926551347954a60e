"""The token draw's share of sampling: torch.multinomial (the draw before 2026-12-07) against rear's
inverse-CDF draw, in one run, for guided and guidance-free sampling of the same pair of models.

    python benchmarks/bench_draw.py GUIDED_CHECKPOINT FREE_CHECKPOINT [--cfg 4] [--batch 250] [--threads 1]

e.g. the CCA evidence's pair (docs/cca.md): runs/study/fashion_mnist/runs/rear-0/checkpoint and its
fine-tune runs/cca/rear-0-lam1/checkpoint. Each of the four settings is timed the best of three,
interleaved; also the draw alone on a [batch, K] batch of logits.
"""
from __future__ import annotations

import argparse
import time

import torch

import rear.generator.sampling as sampling
from own_images import cpu_flags
from rear.checkpoint import load_generator


def multinomial_draw(logits, temperature=1.0, top_k=None, top_p=None, rng=None):
    probs = sampling.filter_logits(logits.float() / temperature, top_k, top_p).softmax(-1)
    return torch.multinomial(probs, 1, generator=rng)[:, 0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("guided")
    parser.add_argument("free")
    parser.add_argument("--cfg", type=float, default=4.0)
    parser.add_argument("--batch", type=int, default=250)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    guided, free = load_generator(args.guided).eval(), load_generator(args.free).eval()
    labels = torch.arange(args.batch) % guided.config.num_classes
    draws = {"multinomial": multinomial_draw, "inverse CDF": sampling.sample_tokens}
    print(f"cpu {cpu_flags()}, {torch.get_num_threads()} thread(s), batch {args.batch}, codes {guided.config.codebook_size}")
    logits = torch.randn(args.batch, guided.config.codebook_size)
    for name, draw in draws.items():
        rng = torch.Generator().manual_seed(0)
        draw(logits, rng=rng)
        began = time.perf_counter()
        for _ in range(100):
            draw(logits, rng=rng)
        print(f"draw alone, {name:<12} {(time.perf_counter() - began) * 10:.3f} ms")
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(3):
        for name, draw in draws.items():
            sampling.sample_tokens = draw  # what generate calls
            for setting, model, scale in (("guided", guided, args.cfg), ("guidance-free", free, 1.0)):
                began = time.perf_counter()
                model.generate(labels, cfg_scale=scale, rng=torch.Generator().manual_seed(0))
                times.setdefault((name, setting), []).append(time.perf_counter() - began)
    sampling.sample_tokens = draws["inverse CDF"]
    for name in draws:
        rates = {s: args.batch / min(times[(name, s)]) for s in ("guided", "guidance-free")}
        print(f"{name:<12} guided (CFG {args.cfg:g}) {rates['guided']:7.1f} images/s, guidance-free "
              f"{rates['guidance-free']:7.1f} images/s: {rates['guidance-free'] / rates['guided']:.2f}x")


if __name__ == "__main__":
    main()
