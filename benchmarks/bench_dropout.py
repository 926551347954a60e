"""ATen's dropout beside rear.generator.dropout on the CPU: one tensor, then whole training steps.

    python benchmarks/bench_dropout.py [--rounds 12]

First forward + backward of one activation of the issue's CPU setting ([32 x 66, 1024], the MLP's
hidden layer); then reAR training steps (bench_train's setting) with either dropout, interleaved
A B A B ... so that both meet the same machine noise; medians of each.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import rear.generator.dropout as ours
from bench_sampling import cpu_flags, random_weights, seconds
from bench_train import add_train_args, train_config, training_batch, training_step
from rear import precision
from rear.generator import build_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(parser)
    parser.add_argument("--rounds", type=int, default=12, help="training steps per variant, interleaved")
    args = parser.parse_args()
    if len(args.batch) != 1:
        parser.error("bench_dropout.py times one batch size; give --batch once")
    B = args.batch[0]
    variants = {"ATen F.dropout": F.dropout, "rear dropout": ours.dropout}
    cpu = torch.device("cpu")
    print(f"cpu ({cpu_flags()}, {torch.get_num_threads()} threads) "
          f"{'bf16 autocast' if precision.native_bf16(cpu) else 'float32'} training steps, p = 0.1")

    x = torch.randn(B * (args.tokens + 2), 1024, requires_grad=True)
    grad = torch.randn_like(x)
    for name, fn in variants.items():
        t = seconds(lambda: fn(x, 0.1, True).backward(grad), cpu, 20)
        print(f"{name:<16} [{x.shape[0]}, 1024] forward + backward  {t * 1e3:7.2f} ms")

    torch.manual_seed(0)
    model = random_weights(build_generator(train_config(args))).train()
    step = training_step(model, training_batch(args, cpu, B), 0.5, bf16=True)
    step()
    times = {name: [] for name in variants}
    for _ in range(args.rounds):
        for name, fn in variants.items():
            ours.dropout = fn  # what rear.generator.dropout.Dropout calls
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["ATen F.dropout"])
    for name, ts in times.items():
        t = statistics.median(ts)
        print(f"{name:<16} training step (median of {args.rounds})  {t * 1e3:7.1f} ms   {base / t:5.3f}x")


if __name__ == "__main__":
    main()
