"""What several commands share: the sampling, thread, speed and extractor flags, and argparse types."""
from __future__ import annotations

import argparse

TOKENIZER_HELP = ("a folder from `rear tokenizer train`, maskgit-vqgan-imagenet-f16-256.bin, a TiTok (its Hugging Face "
                  "folder or .bin) or AliTok.pth")


def count(text: str) -> int:
    """An argparse type: a whole number of at least 1 (images, items, a batch)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

SAMPLING_FLAGS = ("cfg_scale", "cfg_power", "temperature", "top_k", "top_p")


def sample_config(args: argparse.Namespace, checkpoint: str, command: str, announce: bool = True):
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


def add_sampling_flags(parser: argparse.ArgumentParser) -> None:
    from rear.config import SampleConfig

    d = SampleConfig()
    default = "default: the checkpoint's generation_config.json, else %s"
    parser.add_argument("--cfg-scale", type=float, help="guidance g, 1 = none (" + default % d.cfg_scale + ")")
    parser.add_argument("--cfg-power", type=float, help="power of the cosine schedule (" + default % d.cfg_power + ")")
    parser.add_argument("--temperature", type=float, help="(" + default % d.temperature + ")")
    parser.add_argument("--top-k", type=count, help="(" + default % d.top_k + ")")
    parser.add_argument("--top-p", type=float, help="(" + default % d.top_p + ")")


def add_threads_flag(parser: argparse.ArgumentParser, configured: bool = False) -> None:
    """--threads; `configured`: the command's config has its own `threads`, which the flag overrides."""
    parser.add_argument("--threads", type=count, help="CPU threads for torch (default: " + (
        "the config's threads if set, else " if configured else "") + "the cores the load average leaves free)")
    parser.set_defaults(threads_in_config=configured)


def add_speed_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile the one-token step, with CUDA graphs on a GPU (default: on a GPU; "
                        "off on a CPU, where benchmarks/bench_sampling.py --compile measures it slower)")
    parser.add_argument("--bf16", action="store_true",
                        help="weights and KV cache in bfloat16, where the device computes it natively "
                        "(a GPU, an AVX-512-BF16 or AMX CPU); the samples differ slightly from float32")


def add_extractor_flags(parser: argparse.ArgumentParser) -> None:
    extractor = parser.add_mutually_exclusive_group(required=True)
    extractor.add_argument("--classifier", help="domain classifier folder (rear eval train-classifier): small datasets")
    extractor.add_argument("--inception", nargs="?", const="", metavar="PATH",
                           help="FID InceptionV3 (pt_inception-2015-12-05-6726825d.pth; default: $REAR_INCEPTION, "
                           "then ~/.cache/rear, downloaded there when online)")
