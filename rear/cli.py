"""`rear` command line: thin wrappers over the package."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rear import threads
from rear.errors import one_line

TOKENIZER_HELP = ("a folder from `rear tokenizer train`, maskgit-vqgan-imagenet-f16-256.bin, a TiTok (its Hugging Face "
                  "folder or .bin) or AliTok.pth")

def cmd_demo(args: argparse.Namespace) -> None:
    from rear.demo import run_demo

    for path in (args.tokenizer_config, args.config):
        if not Path(path).is_file():
            raise FileNotFoundError(f"config {path} not found; run from the repository root or pass its path")
    run_demo(args.tokenizer_config, args.config, Path(args.root), args.data_dir)


def cmd_tokenizer_train(args: argparse.Namespace) -> None:
    from rear.config import TokenizerTrainConfig, chosen_keys, merge
    from rear.data.folder import infer_channels
    from rear.data.sources import parse_source, split_parts
    from rear.evaluation.classifier import load_classifier
    from rear.train.tokenizer import source_images, train_tokenizer

    config = merge(TokenizerTrainConfig, args.config, args.overrides)
    config.threads = threads.use("tokenizer train", args.threads, config.threads)
    if Path(config.out).exists() and not args.force:
        raise FileExistsError(f"{config.out} exists; pass --force to replace it or set out=...")
    root, _ = parse_source(args.source)
    if root != "fashion-mnist" and "model.channels" not in chosen_keys(args.config, args.overrides):
        config.model.channels = infer_channels(root)
        print(f"channels: {config.model.channels} ({'grayscale' if config.model.channels == 1 else 'RGB'}), "
              f"read from the images of {root}; set model.channels to choose")
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


def cmd_pretokenize(args: argparse.Namespace) -> None:
    from rear.data.sources import open_source
    from rear.data.store import pretokenize
    from rear.tokenizer.load import load_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = load_tokenizer(args.tokenizer, device)
    source = open_source(args.source, tokenizer.channels, args.data_dir)
    sizes = {"batch_size": args.batch_size} if args.batch_size else {}
    views = ("ten crops, mirrored too" if args.ten_crop else "as is" if args.no_flip
             else "as is + mirrored (ImageNet practice; pass --no-flip for digits, text or shoes facing one way)")
    print(f"{source.num_items} images of {source.identity}, views: {views}")
    out = pretokenize(source, tokenizer, args.out, tokenizer_path=str(args.tokenizer), ten_crop=args.ten_crop,
                      flip=not args.no_flip, strict=args.strict, **sizes)
    print(f"token store: {out}")


def cmd_preview(args: argparse.Namespace) -> None:
    import numpy as np

    from rear.data.store import TokenStore
    from rear.images import save_grid
    from rear.tokenizer.load import load_tokenizer

    store = TokenStore(args.store)
    tokenizer = load_tokenizer(args.tokenizer or store.manifest["tokenizer"]["path"])
    store.check_tokenizer(tokenizer.fingerprint())
    count = min(args.count, len(store))
    items = torch.linspace(0, len(store) - 1, count).long().numpy()
    # one row per view: items tiled (not each repeated) beside views repeated per row
    tokens, labels = store.batch(np.tile(items, store.num_views), np.arange(store.num_views).repeat(count))
    path = save_grid(tokenizer.decode(tokens), args.out, columns=count)
    print(f"decoded {count} items x {store.num_views} views (one row per view): {path}")


SAMPLING_FLAGS = ("cfg_scale", "cfg_power", "temperature", "top_k", "top_p")


def _sample_config(args: argparse.Namespace, checkpoint: str, command: str, announce: bool = True):
    """The checkpoint's sampling settings (generation_config.json), else the defaults, with the flags
    given on the command line on top; says which it used."""
    import dataclasses

    from rear.checkpoint import read_generation
    from rear.config import SampleConfig

    generation = read_generation(checkpoint)
    if generation is not None and generation.sample is not None:
        base, origin = generation.sample, "the checkpoint's"
    else:
        base, origin = SampleConfig(), "default" + (" (its generation_config.json sets none)" if generation else "")
    given = {name: getattr(args, name) for name in SAMPLING_FLAGS if getattr(args, name) is not None}
    try:
        sample = dataclasses.replace(base, **given).validate()
    except ValueError as error:  # "cfg_scale must lie in ..." of a flag: name the flag
        key, rest = str(error).split(" ", 1)
        raise ValueError(f"--{key.replace('_', '-')} {rest}" if key in given else str(error)) from None
    settings = ", ".join(f"{name} {getattr(sample, name)}" for name in SAMPLING_FLAGS)
    flags = f"; from the command line: {', '.join(given)}" if given else ""
    if announce:
        print(f"rear {command}: sampling with {settings} ({origin} settings{flags})")
    return sample


def _add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    from rear.config import SampleConfig

    d = SampleConfig()
    default = "default: the checkpoint's generation_config.json, else %s"
    parser.add_argument("--cfg-scale", type=float, help="guidance g, 1 = none (" + default % d.cfg_scale + ")")
    parser.add_argument("--cfg-power", type=float, help="power of the cosine schedule (" + default % d.cfg_power + ")")
    parser.add_argument("--temperature", type=float, help="(" + default % d.temperature + ")")
    parser.add_argument("--top-k", type=count, help="(" + default % d.top_k + ")")
    parser.add_argument("--top-p", type=float, help="(" + default % d.top_p + ")")


def _add_threads_flag(parser: argparse.ArgumentParser, configured: bool = False) -> None:
    """--threads; `configured`: the command's config has its own `threads`, which the flag overrides."""
    parser.add_argument("--threads", type=count, help="CPU threads for torch (default: " + (
        "the config's threads if set, else " if configured else "") + "the cores the load average leaves free)")
    parser.set_defaults(threads_in_config=configured)


def _add_speed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the one-token step, with CUDA graphs on a GPU (default: on a GPU; "
                        "off on a CPU, where benchmarks/bench_sampling.py --compile measures it slower)")
    parser.add_argument("--bf16", action="store_true",
                        help="weights and KV cache in bfloat16, where the device computes it natively "
                        "(a GPU, an AVX-512-BF16 or AMX CPU); the samples differ slightly from float32")


def _sampling_model(args: argparse.Namespace, device: torch.device, announce: bool):
    """The checkpoint's generator on `device`, in bfloat16 if --bf16, and whether to compile its step."""
    from rear import precision
    from rear.checkpoint import load_generator
    from rear.generator.sampling import compile_pays

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
    return model, compiled


def cmd_sample(args: argparse.Namespace) -> None:
    from rear.evaluation.samples import write_samples
    from rear.tokenizer.load import load_tokenizer
    from rear.distributed import setup, teardown

    world = setup()
    try:
        sample = _sample_config(args, args.checkpoint, "sample", announce=world.main)  # checked before loading
        model, compiled = _sampling_model(args, world.device, world.main)
        tokenizer = load_tokenizer(args.tokenizer, world.device)
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
    from rear.tokenizer.load import load_tokenizer

    world = setup()
    try:
        sample = _sample_config(args, args.checkpoint, "reproduce", announce=world.main)  # checked before loading
        model, compiled = _sampling_model(args, world.device, world.main)
        tokenizer = load_tokenizer(args.tokenizer, world.device)
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


def _reference_images(spec: str, size: int, data_dir: str | None):
    """uint8 [n, S, S, 3] images of a source (fashion-mnist:test, FOLDER:heldout, ...) at size S,
    or as they are of a plain folder of images or an .npz."""
    from rear.data.sources import open_source, parse_source, read_all
    from rear.evaluation.evaluate import load_images
    from rear.images import to_uint8

    root, part = (spec, None) if spec.endswith(".npz") else parse_source(spec)
    if root == "fashion-mnist" or part:
        return to_uint8(read_all(open_source(spec, 3, data_dir), size)[0])
    return load_images(spec)[0]


def _refuse_existing(path: str, overwrite: bool) -> None:
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another --out")


def cmd_eval_classifier(args: argparse.Namespace) -> None:
    from rear.config import ClassifierConfig, chosen_keys, merge
    from rear.data.folder import infer_channels
    from rear.data.sources import open_source, parse_source, read_all, split_parts
    from rear.evaluation.classifier import train_classifier

    _refuse_existing(args.out, args.overwrite)
    given = [args.config] if args.config else []
    merge(ClassifierConfig, *given, args.overrides)  # a mistaken key or value fails here, before any data is read
    root, _ = parse_source(args.source)
    parts = split_parts(args.source)
    chosen = chosen_keys(*given, args.overrides)
    probe = open_source(parts[0], 1, args.data_dir)
    found = {"num_classes": len(probe.class_names),
             "channels": 1 if root == "fashion-mnist" else infer_channels(root)}
    config = merge(ClassifierConfig, {k: v for k, v in found.items() if k not in chosen}, *given, args.overrides)
    train, test = (read_all(open_source(p, config.channels, args.data_dir), config.image_size) for p in parts)
    source = {"source": args.source, "train": parts[0], "test": parts[1], "class_names": probe.class_names,
              "channels": config.channels, "image_size": config.image_size}
    metrics = train_classifier(config, train, test, args.out, source=source)
    print(f"classifier: {args.out}  {len(train[0])} training images, accuracy {metrics['test_accuracy']:.2%} "
          f"on the {len(test[0])} of {parts[1]} ({config.channels} channel(s), {config.num_classes} classes)")


def _extractor(args: argparse.Namespace):
    from rear.evaluation.evaluate import open_extractor

    return open_extractor(args.classifier, None if args.classifier else args.inception or None)


def cmd_eval_stats(args: argparse.Namespace) -> None:
    from rear.evaluation.evaluate import save_reference

    _refuse_existing(args.out, args.overwrite)
    extractor = _extractor(args)
    images = _reference_images(args.source, extractor.image_size or 32, args.data_dir)
    path = save_reference(args.out, extractor.embed(images), images.shape[1], extractor.fingerprint)
    print(f"reference statistics of {len(images)} images: {path}")


def cmd_eval_score(args: argparse.Namespace) -> None:
    import json

    from rear.evaluation.evaluate import load_images, load_reference, reference_statistics, score, write_metrics

    extractor = _extractor(args)
    images, labels = load_images(args.samples)
    if args.tokenizer and (extractor.classifier is None or Path(args.reference).suffix == ".npz"):
        raise ValueError("--tokenizer (the ceiling) needs --classifier and a labelled --reference source such as "
                         "FOLDER:heldout or fashion-mnist:test")
    if extractor.classifier is not None:
        from rear.evaluation.evaluate import check_domain

        for warning in check_domain(images, labels, extractor.classifier):
            print(f"rear eval score: warning: {warning}", file=sys.stderr)
    if args.reference.endswith(".npz") and Path(args.reference).is_file():
        reference = load_reference(args.reference, extractor.embed, extractor.fingerprint)
        if "image_size" in reference and int(reference["image_size"]) != images.shape[1]:
            raise ValueError(f"reference {args.reference} is of {int(reference['image_size'])} px images, samples are {images.shape[1]} px")
    elif args.tokenizer:  # one read of the labelled reference, in the tokenizer's channels, for both
        from rear.data.sources import open_source, read_all
        from rear.images import to_uint8
        from rear.tokenizer.load import load_tokenizer

        tokenizer = load_tokenizer(args.tokenizer)
        read = read_all(open_source(args.reference, tokenizer.channels, args.data_dir), tokenizer.image_size)
        reference = reference_statistics(extractor.embed(to_uint8(read[0].expand(-1, 3, -1, -1))))
    else:
        size = extractor.image_size or images.shape[1]
        reference = reference_statistics(extractor.embed(_reference_images(args.reference, size, args.data_dir)))
    metrics = {**score(extractor.embed(images), reference, labels if extractor.classifier is not None else None),
               "samples": str(args.samples), "reference": args.reference, "extractor": extractor.fingerprint}
    if args.tokenizer:
        from rear.evaluation.ceiling import ceiling_warning, source_ceiling

        metrics["ceiling"] = source_ceiling(tokenizer, extractor.classifier, args.reference, read=read)
        if warning := ceiling_warning(metrics["ceiling"]):
            metrics["warnings"].append(warning)
    out = Path(args.out or Path(args.samples).with_name("metrics.json"))
    write_metrics(metrics, out)
    print(json.dumps(metrics, indent=2))
    if "ceiling" in metrics:
        from rear.evaluation.ceiling import ceiling_line

        print(ceiling_line(metrics["ceiling"]))
    for warning in metrics["warnings"]:
        print(f"rear eval score: warning: {warning}", file=sys.stderr)
    print(f"metrics: {out}")


def cmd_diagnose(args: argparse.Namespace) -> None:
    import json

    import numpy as np

    from rear.checkpoint import load_generator
    from rear.data.sources import open_source, read_all, source_spec
    from rear.data.store import TokenStore
    from rear.evaluation import diagnose as d
    from rear.tokenizer.load import load_tokenizer, read_codebook

    sample = _sample_config(args, args.checkpoint, "diagnose")  # checked before anything is loaded
    model = load_generator(args.checkpoint).eval()
    tokenizer = load_tokenizer(args.tokenizer)
    tokenizer.check_fits(model.config.codebook_size, model.config.num_tokens, f"generator {args.checkpoint}")
    store = TokenStore(args.heldout)
    store.check_tokenizer(tokenizer.fingerprint())
    items = d.balanced_items(np.asarray(store.labels), args.count, args.seed)
    tokens, labels = store.batch(items, np.zeros_like(items))
    C = model.config.num_classes
    results: dict = {"heldout": {"store": str(args.heldout), "items": len(items),
                                 "per_class": np.bincount(labels.numpy(), minlength=store.num_classes).tolist()}}

    def attempt(name: str, metric) -> None:
        """A metric that fails is reported as failed; the others still run."""
        try:
            results[name] = metric()
        except (ValueError, RuntimeError, OSError) as error:
            results[name] = f"failed: {error}"
            print(f"rear diagnose: {name} failed: {error}", file=sys.stderr)

    attempt("retokenization_consistency", lambda: d.retokenization_consistency(
        model, tokenizer, torch.arange(args.samples) % C, sample, args.seed))
    attempt("correct_token_ratio_clean", lambda: d.token_accuracy(model, tokens, labels, 0.0, args.seed))
    attempt(f"correct_token_ratio_noisy_r{args.noise}", lambda: d.token_accuracy(model, tokens, labels, args.noise, args.seed))
    if model.decode_align_mlp is not None:
        attempt("decode_head_cosine", lambda: d.decode_cosine(model, tokens, labels, read_codebook(args.tokenizer)[0]))
    if args.classifier:
        from rear.evaluation.classifier import load_classifier

        from rear.evaluation.ceiling import report_ceiling, tokenizer_ceiling

        def ceiling() -> dict:  # the held-out store's own images, in the tokenizer's channels
            source = open_source(source_spec(store.manifest["source"]), tokenizer.channels, args.data_dir)
            images, source_labels = read_all(source, tokenizer.image_size)
            # files skipped as unreadable then (or now) shift every later index: the items must line up
            if len(images) != len(store) or not np.array_equal(source_labels.numpy(), np.asarray(store.labels)):
                raise ValueError(f"the store's source {store.manifest['source']} no longer matches the store "
                                 f"({len(images)} readable images now, {len(store)} in the store, or other labels); "
                                 "pretokenize it again")
            found = tokenizer_ceiling(tokenizer, load_classifier(args.classifier), images[torch.from_numpy(items)], labels)
            report_ceiling(found, "rear diagnose", line=False)
            return found

        attempt("tokenizer_ceiling", ceiling)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"diagnostics: {args.out}")


def cmd_study(args: argparse.Namespace) -> None:
    from rear.config import StudyConfig, merge
    from rear.study import run_study

    if not Path(args.config).is_file():
        raise FileNotFoundError(f"config {args.config} not found; run from the repository root or pass its path")
    config = merge(StudyConfig, args.config, args.overrides)
    if args.report:
        from rear.study.report import DOCS, refresh

        print(f"rewrote {refresh(config.results, args.config, [Path(d) for d in args.docs or DOCS])}")
        return
    config.threads = threads.use("study", args.threads, config.threads)
    results = run_study(config, quick=args.quick)
    print(f"results: {results}")


def _add_extractor_flags(parser: argparse.ArgumentParser) -> None:
    extractor = parser.add_mutually_exclusive_group(required=True)
    extractor.add_argument("--classifier", help="domain classifier folder (rear eval train-classifier): small datasets")
    extractor.add_argument("--inception", nargs="?", const="", metavar="PATH",
                           help="FID InceptionV3 (pt_inception-2015-12-05-6726825d.pth; default: $REAR_INCEPTION, "
                           "then ~/.cache/rear, downloaded there when online)")


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one `--help` away) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (images, items, a batch)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rear", description="Visual autoregressive generation with reAR.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo", help="the main job on Fashion-MNIST: tokenizer, token store, reAR generator, samples",
        description="Train the small tokenizer (or reuse the one trained before), pretokenize Fashion-MNIST, "
        "train a reAR generator, and save a class-by-class sample grid and a loss curve.")
    demo.add_argument("--root", default="runs/demo", help="working folder (default: %(default)s)")
    demo.add_argument("--tokenizer-config", default="configs/fmnist/tokenizer_demo.yaml")
    demo.add_argument("--config", default="configs/fmnist/demo.yaml", help="generator training config")
    demo.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: $REAR_DATA, then the Debian package)")
    _add_threads_flag(demo)
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
    _add_threads_flag(tok_train, configured=True)
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
    _add_threads_flag(train, configured=True)
    train.set_defaults(func=cmd_train)

    pretok = commands.add_parser(
        "pretokenize", help="turn a dataset into a memory-mapped token store",
        description="Encode every image (as is and mirrored, or ten crops) into a token store. "
        "Run the same command again to resume an interrupted run.")
    pretok.add_argument("source", help="fashion-mnist:train, fashion-mnist:test, or an image folder (one sub-folder per "
                        "class): FOLDER (all), FOLDER:train or FOLDER:heldout (10%% of each class, fixed by file names)")
    pretok.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    pretok.add_argument("--out", required=True, help="store folder to create")
    pretok.add_argument("--data-dir", help="Fashion-MNIST IDX folder (default: $REAR_DATA, then the Debian package)")
    pretok.add_argument("--ten-crop", action="store_true", help="ten crops instead of as-is + mirrored")
    pretok.add_argument("--no-flip", action="store_true", help="one view per image (no mirrored copy): half the time")
    pretok.add_argument("--batch-size", type=count, help="images per encoder batch (default: rear.data.store.pretokenize's)")
    pretok.add_argument("--strict", action="store_true", help="fail on unreadable images instead of skipping them")
    _add_threads_flag(pretok)
    pretok.set_defaults(func=cmd_pretokenize)

    preview = commands.add_parser("preview", help="decode a few stored entries into a PNG grid",
                                  description="Decode evenly spaced entries of a token store, every view, into a PNG.")
    preview.add_argument("store", help="token store folder")
    preview.add_argument("--out", default="outputs/store_preview.png")
    preview.add_argument("--count", type=count, default=8, help="items to show (default: %(default)s)")
    preview.add_argument("--tokenizer", help="tokenizer (default: the one named in the manifest)")
    _add_threads_flag(preview)
    preview.set_defaults(func=cmd_preview)

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
    _add_sampling_flags(sample)
    _add_speed_flags(sample)
    _add_threads_flag(sample)
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
    _add_threads_flag(serve)
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
    _add_sampling_flags(repro)
    _add_speed_flags(repro)
    _add_threads_flag(repro)
    repro.set_defaults(func=cmd_reproduce)

    evaluation = commands.add_parser("eval", help="score samples (score), reference statistics (stats), "
                                     "the domain classifier (train-classifier)", description="Evaluation commands.")
    eval_commands = evaluation.add_subparsers(dest="eval_command", required=True, metavar="COMMAND")
    score = eval_commands.add_parser(
        "score", help="FID, sFID, IS, precision/recall and class accuracy of samples",
        description="Score a sample .npz or image folder against a reference (a dataset split such as "
        "fashion-mnist:test, an image folder, or saved statistics from `rear eval stats`); prints and saves JSON.")
    score.add_argument("samples", help="samples.npz or a folder of images")
    score.add_argument("--reference", required=True,
                       help="fashion-mnist:test, FOLDER:heldout (any source name), a plain image folder, "
                       "or statistics from `rear eval stats` / an ADM reference .npz")
    _add_extractor_flags(score)
    score.add_argument("--tokenizer", help="the samples' tokenizer: also record its ceiling (the classifier's accuracy, "
                       "FID and KID of its reconstructions of the reference images); needs --classifier and a "
                       "labelled reference such as FOLDER:heldout")
    score.add_argument("--out", help="metrics JSON (default: metrics.json beside the samples)")
    score.add_argument("--data-dir")
    _add_threads_flag(score)
    score.set_defaults(func=cmd_eval_score)
    stats = eval_commands.add_parser("stats", help="save reference statistics of a dataset",
                                     description="Compute and save reference statistics (.npz) of a dataset split, folder or .npz.")
    stats.add_argument("source", help="fashion-mnist:test, FOLDER:heldout (any source name), a plain image folder, or an .npz")
    _add_extractor_flags(stats)
    stats.add_argument("--out", required=True)
    stats.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    stats.add_argument("--data-dir")
    _add_threads_flag(stats)
    stats.set_defaults(func=cmd_eval_stats)
    clf = eval_commands.add_parser("train-classifier", help="train a domain classifier on Fashion-MNIST or a folder",
                                   description="Train the domain classifier whose features replace InceptionV3 on small data.")
    clf.add_argument("overrides", nargs="*", help="key=value overrides of ClassifierConfig")
    clf.add_argument("--source", default="fashion-mnist",
                     help="fashion-mnist (train; test scored) or an image folder (FOLDER:train; FOLDER:heldout scored); "
                     "channels and classes come from the data unless overridden")
    clf.add_argument("--config", help="YAML of ClassifierConfig settings (e.g. configs/own/classifier.yaml); "
                     "key=value overrides go on top")
    clf.add_argument("--out", default="runs/classifier")
    clf.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    clf.add_argument("--data-dir")
    _add_threads_flag(clf)
    clf.set_defaults(func=cmd_eval_classifier)

    diagnose = commands.add_parser(
        "diagnose", help="generator-tokenizer consistency diagnostics of a checkpoint",
        description="Re-tokenization consistency, correct-token ratio (clean / noisy context), decode-head cosine, "
        "and with --classifier the tokenizer's ceiling (FID, KID and class accuracy of its reconstructions).")
    diagnose.add_argument("checkpoint")
    diagnose.add_argument("--tokenizer", required=True, help=TOKENIZER_HELP)
    diagnose.add_argument("--heldout", required=True, help="token store of held-out images (fashion-mnist:test)")
    diagnose.add_argument("--classifier")
    diagnose.add_argument("--count", type=count, default=2000,
                          help="held-out items, class-balanced, drawn with --seed (default %(default)s)")
    diagnose.add_argument("--samples", type=count, default=200, help="samples for re-tokenization (default %(default)s)")
    diagnose.add_argument("--noise", type=float, default=1.0, help="corruption bound r of the noisy context")
    diagnose.add_argument("--seed", type=int, default=0)
    diagnose.add_argument("--data-dir")
    diagnose.add_argument("--out", help="also write the results to this JSON file")
    _add_sampling_flags(diagnose)
    _add_threads_flag(diagnose)
    diagnose.set_defaults(func=cmd_diagnose)

    study = commands.add_parser(
        "study", help="plain AR vs reAR and the two ablations, several seeds, resumable (results.json)",
        description="Train and evaluate the four arms (plain AR, noisy context only, embedding alignment only, "
        "reAR) over several seeds: FID against training steps, CFG chosen on a validation split, final scores "
        "on the test split, consistency diagnostics. Every finished unit is recorded in RESULTS/results.json at "
        "once; running the same command again skips what is done and resumes a half-trained run.")
    study.add_argument("config", help="study YAML, e.g. configs/fmnist/study.yaml")
    study.add_argument("overrides", nargs="*", help="key=value overrides, e.g. seeds.ar=5 train.steps=3200")
    study.add_argument("--quick", action="store_true",
                       help="the same pipeline on a budget of minutes, written under OUT-quick (never to results/)")
    study.add_argument("--report", action="store_true",
                       help="compute nothing: rewrite RESULTS/table.md, the plots and the study's blocks in the docs "
                       "(between their markers) from RESULTS/results.json")
    study.add_argument("--docs", nargs="+",
                       help="the documents whose blocks --report rewrites (default: README.md and docs/study.md)")
    _add_threads_flag(study, configured=True)
    study.set_defaults(func=cmd_study)
    return parser


def main(argv: list[str] | None = None) -> None:
    """`rear ...`: a mistake or a failure is one line on stderr and exit 2 (`--debug` shows the traceback)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may follow options too (`rear tokenizer train cfg.yaml --source x steps=3`)
    misplaced = [a for a in extra if "=" in a and not a.startswith("-")] if hasattr(args, "overrides") else []
    if len(misplaced) != len(extra):
        parser.error(f"unrecognized arguments: {' '.join(a for a in extra if a not in misplaced)}")
    if misplaced:
        args.overrides = [*args.overrides, *misplaced]
    before = torch.get_num_threads()  # a command's threads hold for that command only (main may run in-process)
    try:
        if hasattr(args, "threads") and not args.threads_in_config:
            threads.use(args.command, args.threads)
        args.func(args)
    except KeyboardInterrupt as interrupt:
        if debug:
            raise
        print(f"rear {args.command}: {interrupt or 'interrupted'}", file=sys.stderr)
        sys.exit(130)
    except (ValueError, OSError, FloatingPointError, ImportError) as error:  # OSError: missing files, full disks; ImportError: an extra not installed
        if debug:
            raise
        print(f"rear {args.command}: error: {one_line(error)}", file=sys.stderr)
        sys.exit(2)
    finally:
        torch.set_num_threads(before)
