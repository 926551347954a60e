"""`rear pretokenize` and `rear preview`: the token store."""
from __future__ import annotations

import argparse

import torch

from rear.cli.flags import TOKENIZER_HELP, add_threads_flag, count


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


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """This group's commands, each beside its handler above."""
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
    add_threads_flag(pretok)
    pretok.set_defaults(func=cmd_pretokenize)

    preview = commands.add_parser("preview", help="decode a few stored entries into a PNG grid",
                                  description="Decode evenly spaced entries of a token store, every view, into a PNG.")
    preview.add_argument("store", help="token store folder")
    preview.add_argument("--out", default="outputs/store_preview.png")
    preview.add_argument("--count", type=count, default=8, help="items to show (default: %(default)s)")
    preview.add_argument("--tokenizer", help="tokenizer (default: the one named in the manifest)")
    add_threads_flag(preview)
    preview.set_defaults(func=cmd_preview)
