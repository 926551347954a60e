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


def cmd_train(args: argparse.Namespace) -> None:
    from rear.config import TrainConfig, merge
    from rear.train.trainer import train

    config = merge(TrainConfig, args.config, args.overrides)
    checkpoint = train(config, resume=args.resume)
    print(f"checkpoint: {checkpoint}")


def cmd_pretokenize(args: argparse.Namespace) -> None:
    from rear.data.store import open_source, pretokenize
    from rear.tokenizer.load import load_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(args.tokenizer, device)
    source = open_source(args.source, tokenizer.channels, args.data_dir)
    out = pretokenize(source, tokenizer, args.out, tokenizer_path=str(args.tokenizer), ten_crop=args.ten_crop,
                      batch_size=args.batch_size, strict=args.strict)
    print(f"token store: {out}")


def cmd_preview(args: argparse.Namespace) -> None:
    from rear.data.store import TokenStore
    from rear.images import save_grid
    from rear.tokenizer.load import load_tokenizer

    store = TokenStore(args.store)
    tokenizer = load_tokenizer(args.tokenizer or store.manifest["tokenizer"]["path"])
    store.check_tokenizer(tokenizer.fingerprint())
    count = min(args.count, len(store))
    items = torch.linspace(0, len(store) - 1, count).long().numpy()
    tokens, labels = store.batch(items.repeat(store.num_views), torch.arange(store.num_views).repeat_interleave(count).numpy())
    path = save_grid(tokenizer.decode(tokens), args.out, columns=count)
    print(f"decoded {count} items x {store.num_views} views (one row per view): {path}")


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

    train = commands.add_parser(
        "train", help="train a generator from a YAML config (torchrun for several processes)",
        description="Train a generator: dataclass defaults <- CONFIG.yaml <- key=value overrides "
        "(unknown keys are errors). Under `torchrun --nproc_per_node N -m rear train ...` it runs DDP.")
    train.add_argument("config", help="YAML config, e.g. configs/fmnist/rear.yaml")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 optim.learning_rate=1e-3")
    train.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint exactly")
    train.set_defaults(func=cmd_train)

    pretok = commands.add_parser(
        "pretokenize", help="turn a dataset into a memory-mapped token store",
        description="Encode every image (as is and mirrored, or ten crops) into a token store. "
        "Run the same command again to resume an interrupted run.")
    pretok.add_argument("source", help="fashion-mnist:train, fashion-mnist:test, or an image folder (one sub-folder per class)")
    pretok.add_argument("--tokenizer", required=True, help="tokenizer folder (rear tokenizer train) or maskgit-vqgan .bin")
    pretok.add_argument("--out", required=True, help="store folder to create")
    pretok.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: $REAR_DATA, then the Debian package)")
    pretok.add_argument("--ten-crop", action="store_true", help="ten crops instead of as-is + mirrored")
    pretok.add_argument("--batch-size", type=int, default=512)
    pretok.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    pretok.set_defaults(func=cmd_pretokenize)

    preview = commands.add_parser("preview", help="decode a few stored entries into a PNG grid",
                                  description="Decode evenly spaced entries of a token store, every view, into a PNG.")
    preview.add_argument("store", help="token store folder")
    preview.add_argument("--out", default="outputs/store_preview.png")
    preview.add_argument("--count", type=int, default=8, help="items to show (default: %(default)s)")
    preview.add_argument("--tokenizer", help="tokenizer (default: the one named in the manifest)")
    preview.set_defaults(func=cmd_preview)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"rear {args.command}: error: {error}", file=sys.stderr)
        sys.exit(2)
