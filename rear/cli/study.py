"""`rear study`: the Fashion-MNIST studies."""
from __future__ import annotations

import argparse
from pathlib import Path

from rear import threads
from rear.cli.flags import add_threads_flag


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


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """This group's commands, each beside its handler above."""
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
    add_threads_flag(study, configured=True)
    study.set_defaults(func=cmd_study)
