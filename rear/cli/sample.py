"""`rear sample`, `rear serve`, `rear reproduce`: drawing images from a checkpoint."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rear.cli.flags import (TOKENIZER_HELP, add_sampling_flags, add_speed_flags, add_threads_flag, count,
                             sample_config)


def _sampling_inputs(args: argparse.Namespace, world):
    """What `sample` and `reproduce` sample with, on this rank: the settings (the checkpoint's with the
    flags on top, checked before anything is loaded), the checkpoint's generator on the rank's device
    (bfloat16 with --bf16), whether to compile its step, and the tokenizer."""
    from rear import precision
    from rear.checkpoint import load_generator
    from rear.generator.sampling import compile_pays
    from rear.tokenizer.load import load_tokenizer

    sample = sample_config(args, args.checkpoint, args.command, announce=world.main)
    device, announce = world.device, world.main
    if args.bf16 and not precision.native_bf16(device):
        raise ValueError(f"--bf16: {device} has no native bfloat16 (it would be emulated, several times slower "
                         "than float32); drop the flag")
    model = load_generator(args.checkpoint, device).eval()
    if args.bf16:
        model = model.to(torch.bfloat16)
    compiled = compile_pays(device) if args.compile is None else args.compile
    if announce:
        origin = "--compile" if args.compile else "--no-compile" if args.compile is False else f"the default on {device.type}"
        print(f"rear {args.command}: {'compiled' if compiled else 'eager'} one-token step ({origin}), "
              f"{'bfloat16' if args.bf16 else 'float32'} weights on {device}")
    return sample, model, compiled, load_tokenizer(args.tokenizer, device)


def cmd_sample(args: argparse.Namespace) -> None:
    from rear.distributed import setup, teardown
    from rear.evaluation.samples import write_samples

    world = setup()
    try:
        sample, model, compiled, tokenizer = _sampling_inputs(args, world)
        path = write_samples(model, tokenizer, args.out, args.num_samples, sample,
                             batch_size=args.batch_size, seed=args.seed, world=world,
                             provenance={"checkpoint": str(args.checkpoint), "tokenizer": str(args.tokenizer)},
                             overwrite=args.overwrite, compiled=compiled)
    finally:
        teardown()
    if world.main:
        print(f"samples: {path}")


def cmd_reproduce(args: argparse.Namespace) -> None:
    import json

    from rear.distributed import setup, teardown
    from rear.evaluation.reproduce import RESULT, reproduce

    world = setup()
    try:
        sample, model, compiled, tokenizer = _sampling_inputs(args, world)
        record = reproduce(model, tokenizer, args.out, args.reference, sample, num_samples=args.num_samples,
                           batch_size=args.batch_size, seed=args.seed, inception=args.inception, world=world,
                           provenance={"checkpoint": str(args.checkpoint), "tokenizer": str(args.tokenizer)},
                           overwrite=args.overwrite, compiled=compiled)
    finally:
        teardown()
    if world.main:
        keys = ("fid", "sfid", "inception_score", "precision", "recall", "images_per_s")
        print(json.dumps({k: record[k] for k in keys}, indent=2))
        print(f"record: {Path(args.out) / RESULT}")


def cmd_serve(args: argparse.Namespace) -> None:
    from rear.serve import ServeConfig, load_studio, serve

    device = "cuda" if torch.cuda.is_available() else "cpu"
    studio = load_studio(args.checkpoint, args.tokenizer, device, ServeConfig(max_images=args.max_images))
    serve(studio, args.host, args.port)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """This group's commands, each beside its handler above."""
    sample = commands.add_parser(
        "sample", help="write class-balanced samples as PNGs and an ADM .npz (resumable, torchrun-aware)",
        description="Sample exactly n/C images per class into OUT/png and OUT/samples.npz (arr_0 uint8 [n,H,W,3]); "
        "settings are recorded in OUT/settings.json; rerunning resumes.")
    sample.add_argument("checkpoint", help="generator checkpoint folder or Hugging Face repo id")
    sample.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    sample.add_argument("--out", required=True)
    sample.add_argument("--num-samples", type=count, required=True,
                        help="images, class i mod C for image i: as even over the C classes as N allows")
    sample.add_argument("--batch-size", type=count, default=64)
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--overwrite", action="store_true",
                        help="replace samples in OUT made by other weights or settings (default: refuse)")
    add_sampling_flags(sample)
    add_speed_flags(sample)
    add_threads_flag(sample)
    sample.set_defaults(func=cmd_sample)

    serve = commands.add_parser(
        "serve", help="a local web page that samples a checkpoint and shows the images fill in (extra: serve)",
        description="Serve a page to pick classes, images and sampling settings, watch the grid fill row by row as "
        "tokens are drawn, and download it as PNG. One generation at a time. Needs pip install 'rear-ar[serve]'.")
    serve.add_argument("checkpoint", help="generator checkpoint folder")
    serve.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default %(default)s: this machine only)")
    serve.add_argument("--port", type=int, default=7860, help="(default %(default)s)")
    serve.add_argument("--max-images", type=count, default=64, help="most images per request (default %(default)s)")
    add_threads_flag(serve)
    serve.set_defaults(func=cmd_serve)

    repro = commands.add_parser(
        "reproduce", help="sample with the checkpoint's settings (torchrun splits it) and score FID, sFID, IS, "
        "precision and recall against an ADM reference batch, writing reproduce.json beside the samples")
    repro.add_argument("checkpoint", help="generator checkpoint folder or Hugging Face repo id")
    repro.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    repro.add_argument("--reference", required=True, help="ADM reference batch, e.g. VIRTUAL_imagenet256_labeled.npz")
    repro.add_argument("--out", required=True, help="folder for the samples, samples.npz and reproduce.json")
    repro.add_argument("--num-samples", type=count, default=50_000, help="class-balanced samples (default %(default)s)")
    repro.add_argument("--batch-size", type=count, default=64)
    repro.add_argument("--seed", type=int, default=0)
    repro.add_argument("--inception", help="FID InceptionV3 weights (default: $REAR_INCEPTION, else the cached "
                       "pytorch-fid file, downloaded once)")
    repro.add_argument("--overwrite", action="store_true", help="replace samples of other weights or settings in --out")
    add_sampling_flags(repro)
    add_speed_flags(repro)
    add_threads_flag(repro)
    repro.set_defaults(func=cmd_reproduce)
