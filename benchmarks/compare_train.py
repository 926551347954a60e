"""Our training step beside the official reAR release's, on the same weights and batch, in one run.

    python benchmarks/compare_train.py --official PATH/TO/reAR [--compile]

One step = forward with the reAR loss (noisy context at ratio 0.5, both alignment heads) + backward +
gradient clipping + AdamW, at the issue's CPU setting by default (width 256, depth 6, 4 heads, 64
tokens, 512 codes, batch 32, projection 2048, Z 256); bf16 autocast where the device computes it
natively, float32 elsewhere, for both. First it checks that both compute the same losses on the same
clean batch (ce, align, total), then counts each step's FLOPs (torch's FlopCounterMode: matmuls and
attention, forward and backward) and times each by the median of --repeats steps after a warm-up.
The official code is read from the checkout given (benchmarks/peers.py). --compile times our step under
torch.compile (the trainer's compile=true; FLOPs still counted on the eager step); the official step stays
eager, as its release trains.
"""
from __future__ import annotations

import argparse

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_sampling import machine, matmul_peak, random_weights, seconds
from bench_train import add_train_args, forward_flops_per_token, train_config, training_batch, training_step
from peers import official_losses, official_model
from rear import precision
from rear.config import OptimConfig
from rear.generator import build_generator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--official", required=True, help="root of a reAR checkout (github QY-H00/reAR)")
    add_train_args(parser)
    parser.add_argument("--ratio", type=float, default=0.5, help="noisy-context ratio for both")
    parser.add_argument("--compile", action="store_true", help="our step under torch.compile")
    args = parser.parse_args()
    if len(args.batch) != 1:
        parser.error("compare_train.py times one batch size; give --batch once")
    B = args.batch[0]

    device = torch.device(args.device)
    torch.manual_seed(0)
    config = train_config(args)
    ours = random_weights(build_generator(config)).to(device).train()
    official = official_model(args.official, ours, noise=True).train()
    loss_fn = official_losses(args.official).ARLoss(official.config)
    tokens, labels, features = batch = training_batch(args, device, B)
    bf16 = precision.native_bf16(device)

    def official_losses_of(ratio: float):
        official.set_random_ratio(ratio)
        logits, targets, encode_z, decode_z, perturbed = official(tokens, official.preprocess_condition(labels.clone()),
                                                                  return_labels=True)
        loss, parts = loss_fn(logits, targets, encode_z, decode_z, features, perturbed)
        return loss, parts

    # the same losses on a clean batch, dropout off
    ours.eval(), official.eval()
    with torch.no_grad():
        mine = ours.training_losses(tokens, labels, features)
        _, theirs = official_losses_of(0.0)
    ours.train(), official.train()
    diffs = {"ce": (mine["ce"] - theirs["ar_loss"]).abs().item(), "align": (mine["align"] - theirs["proj_loss"]).abs().item(),
             "total": (mine["total"] - theirs["loss"]).abs().item()}
    print("same losses (clean batch, eval mode): " + ", ".join(f"{k} |diff| {v:.1e}" for k, v in diffs.items()))

    ours_step = training_step(ours, batch, args.ratio, bf16, compiled=args.compile)
    counted_step = training_step(ours, batch, args.ratio, bf16) if args.compile else ours_step  # eager: countable
    oc = OptimConfig()
    official_opt = torch.optim.AdamW(official.parameters(), lr=oc.learning_rate, betas=(oc.beta1, oc.beta2),
                                     weight_decay=oc.weight_decay)

    def official_step() -> None:
        with precision.autocast(device, bf16):
            loss, _ = official_losses_of(args.ratio)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(official.parameters(), 1.0)
        official_opt.step()
        official_opt.zero_grad(set_to_none=True)

    dtype = torch.bfloat16 if bf16 else torch.float32
    peak = matmul_peak(device, dtype)
    flops = 3 * forward_flops_per_token(ours) * B * (args.tokens + 2)
    print(f"device {device} ({machine(device)}, {torch.get_num_threads()} threads) {'bf16 autocast' if bf16 else 'float32'}  "
          f"width {config.width} depth {config.depth} heads {config.heads}  tokens {args.tokens}  codes {args.codes}  "
          f"batch {B}  noise ratio {args.ratio}  ours {'compiled' if args.compile else 'eager'}")
    print(f"matmul peak ({dtype})  {peak / 1e9:8.1f} GFLOP/s")
    times, counted = {}, {}
    for name, step, counted_by in (("rear", ours_step, counted_step), ("official reAR", official_step, official_step)):
        with FlopCounterMode(display=False) as counter:
            counted_by()
        counted[name] = counter.get_total_flops()
        t = times[name] = seconds(step, device, args.repeats)
        print(f"{name:<24} {t * 1e3:8.1f} ms   {B * args.tokens / t:9.0f} tokens/s   "
              f"{flops / t / 1e9:7.1f} GFLOP/s ({flops / t / peak:.1%} of peak)   "
              f"counted {counted[name] / 1e9:6.1f} GFLOP = {counted[name] / t / peak:.1%} of peak", flush=True)
    print(f"rear / official          {times['official reAR'] / times['rear']:8.2f}x   "
          f"(the official step counts {counted['official reAR'] / counted['rear']:.2f}x our FLOPs: the ratio at equal "
          f"FLOP/s)")


if __name__ == "__main__":
    main()
