"""`rear` command line: one module per command group, each parser beside its handler; the work itself
lives in the package (the Python API calls the same functions)."""
from __future__ import annotations

import argparse
import sys

import torch

from rear import threads
from rear.cli import data, evaluate, sample, study, train
from rear.errors import one_line


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (the usage is one `--help` away) and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="rear", description="Visual autoregressive generation with reAR.")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (anywhere on the line)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for group in (train, data, sample, evaluate, study):
        group.add_parsers(commands)
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
