"""`rear demo`, `rear tokenizer train`, `rear train`, `rear info`, `rear convert`: making models."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from rear import threads
from rear.cli.flags import add_threads_flag


def cmd_demo(args: argparse.Namespace) -> None:
    from rear.demo import run_demo

    for path in (args.tokenizer_config, args.config):
        if not Path(path).is_file():
            raise FileNotFoundError(f"config {path} not found; run from the repository root or pass its path")
    run_demo(args.tokenizer_config, args.config, Path(args.root), args.data_dir)


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from rear.config import TokenizerTrainConfig, chosen_keys, merge
    from rear.data.sources import split_parts
    from rear.evaluation.classifier import load_classifier
    from rear.train.tokenizer import read_channels, source_images, train_tokenizer

    config = merge(TokenizerTrainConfig, args.config, args.overrides)
    config.threads = threads.use("tokenizer train", args.threads, config.threads)
    if Path(config.out).exists() and not args.force:
        raise FileExistsError(f"{config.out} exists; pass --force to replace it or set out=...")
    if said := read_channels(config, args.source, chosen_keys(args.config, args.overrides)):
        print(said)
    train_images, heldout = source_images(args.source, config, args.strict)
    print(f"{len(train_images)} training images, {len(heldout)} held out")
    classifier = load_classifier(args.classifier) if args.classifier else None  # fails before the training
    metrics = train_tokenizer(config, train_images, heldout)
    print(f"tokenizer: {config.out}  held-out PSNR {metrics['psnr']:.2f} dB  codebook usage {metrics['usage']:.1%}")
    if classifier is not None:
        from rear.evaluation.ceiling import report_ceiling, source_ceiling
        from rear.tokenizer.load import load_tokenizer
        from rear.train.tokenizer import record_metrics

        ceiling = source_ceiling(load_tokenizer(config.out), classifier, split_parts(args.source)[1], config.data_dir)
        record_metrics(config.out, {"ceiling": ceiling})
        report_ceiling(ceiling, "rear tokenizer train")


def cmd_info(args: argparse.Namespace) -> None:
    from rear.config import PRESETS, generator_preset
    from rear.generator import build_generator

    for name in args.presets or PRESETS:
        config = generator_preset(name)
        with torch.device("meta"):
            model = build_generator(config)
        print(f"{name:10s} {config.backbone.value:5s} width {config.width:5d} depth {config.depth:3d} heads {config.heads:3d}  "
              f"{model.num_parameters():,} parameters (+{model.num_parameters(True) - model.num_parameters():,} "
              f"in alignment heads) at {config.codebook_size} codes, {config.num_classes} classes, "
              f"{config.num_tokens} tokens")


def cmd_convert(args: argparse.Namespace) -> None:
    from rear.checkpoint import save_generator
    from rear.compat import load_alitok_generator, load_official_generator
    from rear.compat.alitok_ar import sample_for_alitok
    from rear.compat.official import sample_from_official

    config, out = (args.config_or_out, Path(args.out)) if args.out else (None, Path(args.config_or_out))
    if out.exists() and not args.force:
        raise FileExistsError(f"{out} exists; pass --force to replace it")
    # the reAR release needs its YAML (the config is not in the weights); AliTok's sizes are in its tensors
    if config:
        model, sample = load_official_generator(args.checkpoint, config), sample_from_official(config)
    else:
        model = load_alitok_generator(args.checkpoint)
        sample = sample_for_alitok(model.config)
    save_generator(model, out, sample=sample)
    settings = f"CFG {sample.cfg_scale:g} / power {sample.cfg_power:g}" if sample else "no known sampling settings"
    print(f"saved {model.num_parameters():,}-parameter {model.config.backbone.value} generator to {out} ({settings})")


def cmd_train(args: argparse.Namespace) -> None:
    from rear.config import TrainConfig, merge
    from rear.train.trainer import train

    config = merge(TrainConfig, args.config, args.overrides)
    config.threads = threads.use("train", args.threads, config.threads)
    checkpoint = train(config, resume=args.resume, overwrite=args.overwrite)
    print(f"checkpoint: {checkpoint}")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """This group's commands, each beside its handler above."""
    demo = commands.add_parser(
        "demo", help="the main job on Fashion-MNIST: tokenizer, token store, reAR generator, samples",
        description="Train the small tokenizer (or reuse the one trained before), pretokenize Fashion-MNIST, "
        "train a reAR generator, and save a class-by-class sample grid and a loss curve.")
    demo.add_argument("--root", default="runs/demo", help="working folder (default: %(default)s)")
    demo.add_argument("--tokenizer-config", default="configs/fmnist/tokenizer_demo.yaml")
    demo.add_argument("--config", default="configs/fmnist/demo.yaml", help="generator training config")
    demo.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: $REAR_DATA, then the Debian package)")
    add_threads_flag(demo)
    demo.set_defaults(func=cmd_demo)

    tokenizer = commands.add_parser("tokenizer", help="tokenizer commands (train)",
                                    description="Tokenizer commands.")
    tokenizer_commands = tokenizer.add_subparsers(dest="tokenizer_command", required=True, metavar="COMMAND")
    tok_train = tokenizer_commands.add_parser(
        "train", help="train a small convolutional VQ tokenizer",
        description="Train a convolutional VQ tokenizer (EMA codebook with dead-code restarts) and save it "
        "as a folder (model.safetensors + config.json + metrics.json); reports held-out PSNR and codebook usage.")
    tok_train.add_argument("config", help="YAML config, e.g. configs/fmnist/tokenizer.yaml")
    tok_train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=1000 out=runs/tok")
    tok_train.add_argument("--source", default="fashion-mnist",
                           help="fashion-mnist (train split; test held out) or an image folder: trains on FOLDER:train, "
                           "evaluates on FOLDER:heldout (10%% of each class, fixed by file names); channels are read "
                           "from the images unless the config sets model.channels")
    tok_train.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    tok_train.add_argument("--classifier", help="domain classifier folder (rear eval train-classifier): also report the "
                           "semantic ceiling, its accuracy on reconstructions of the held-out images beside the originals")
    tok_train.add_argument("--force", action="store_true", help="replace an existing output folder")
    add_threads_flag(tok_train, configured=True)
    tok_train.set_defaults(func=cmd_tokenizer_train)

    info = commands.add_parser("info", help="list generator presets and their parameter counts",
                               description="List generator presets and their parameter counts.")
    info.add_argument("presets", nargs="*", help="preset names (default: all)")
    info.set_defaults(func=cmd_info)

    convert = commands.add_parser(
        "convert", help="convert an official reAR checkpoint (with its YAML) or an AliTok AR checkpoint "
        "(alone) into a rear checkpoint folder",
        description="Load an official reAR checkpoint (.safetensors or plain state dict .bin/.pt) with its "
        "YAML config and save it as a rear checkpoint folder (model.safetensors + config.json).")
    convert.add_argument("checkpoint", help="official weights: reAR-B.safetensors, or AliTok's alitok_b.bin")
    convert.add_argument("config_or_out", metavar="[config] out",
                         help="the reAR release's YAML config (e.g. configs/rear_b.yaml), then the output folder; "
                         "an AliTok checkpoint takes the output folder alone")
    convert.add_argument("out", nargs="?", help=argparse.SUPPRESS)
    convert.add_argument("--force", action="store_true", help="replace an existing output folder")
    convert.set_defaults(func=cmd_convert)

    train = commands.add_parser(
        "train", help="train a generator from a YAML config (torchrun for several processes)",
        description="Train a generator: dataclass defaults <- CONFIG.yaml <- key=value overrides "
        "(unknown keys are errors). Under `torchrun --nproc_per_node N -m rear train ...` it runs DDP.")
    train.add_argument("config", help="YAML config, e.g. configs/fmnist/rear.yaml")
    train.add_argument("overrides", nargs="*", help="key=value overrides, e.g. steps=100 optim.learning_rate=1e-3")
    train.add_argument("--resume", action="store_true", help="continue from OUT_DIR/checkpoint exactly")
    train.add_argument("--overwrite", action="store_true",
                       help="replace the logs, loss plot and grids of an earlier run in OUT_DIR that left no checkpoint")
    add_threads_flag(train, configured=True)
    train.set_defaults(func=cmd_train)
