"""`rear` command line: thin wrappers over the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch


def cmd_demo(args: argparse.Namespace) -> None:
    from rear.demo import run_demo

    path = run_demo(Path(args.out), samples_per_class=args.per_class, seed=args.seed)
    print(f"sample grid: {path}")


def cmd_info(args: argparse.Namespace) -> None:
    from rear.config import PRESETS, generator_preset
    from rear.generator import Generator

    for name in args.presets or PRESETS:
        config = generator_preset(name)
        with torch.device("meta"):
            model = Generator(config)
        print(f"{name:10s} width {config.width:5d} depth {config.depth:3d} heads {config.heads:3d}  "
              f"{model.num_parameters():,} parameters (+{model.num_parameters(True) - model.num_parameters():,} "
              f"in alignment heads) at {config.codebook_size} codes, {config.num_classes} classes, "
              f"{config.num_tokens} tokens")


def cmd_convert(args: argparse.Namespace) -> None:
    from rear.checkpoint import save_generator
    from rear.compat import load_official_generator

    out = Path(args.out)
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    model = load_official_generator(args.checkpoint, args.config)
    save_generator(model, out)
    print(f"saved {model.num_parameters():,}-parameter generator to {out}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rear", description="Visual autoregressive generation with reAR.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser("demo", help="sample a class-by-class PNG grid on the embedded default",
                               description="Sample a class-by-class PNG grid from a small generator.")
    demo.add_argument("--out", default="outputs/demo", help="output folder (default: %(default)s)")
    demo.add_argument("--per-class", type=int, default=8, help="samples per class (default: %(default)s)")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=cmd_demo)

    info = commands.add_parser("info", help="list generator presets and their parameter counts",
                               description="List generator presets and their parameter counts.")
    info.add_argument("presets", nargs="*", help="preset names (default: all)")
    info.set_defaults(func=cmd_info)

    convert = commands.add_parser(
        "convert", help="convert an official reAR checkpoint into a rear checkpoint folder",
        description="Load an official reAR checkpoint (.safetensors or plain state dict .bin/.pt) with its "
        "YAML config and save it as a rear checkpoint folder (model.safetensors + config.json).")
    convert.add_argument("checkpoint", help="official weights, e.g. reAR-B.safetensors")
    convert.add_argument("config", help="official YAML config, e.g. configs/rear_b.yaml")
    convert.add_argument("out", help="output checkpoint folder")
    convert.add_argument("--force", action="store_true", help="replace an existing output folder")
    convert.set_defaults(func=cmd_convert)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"rear {args.command}: error: {error}", file=sys.stderr)
        sys.exit(2)
