"""`rear eval score | stats | train-classifier` and `rear diagnose`: measuring."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from rear.cli.flags import (TOKENIZER_HELP, add_extractor_flags, add_sampling_flags, add_threads_flag, count,
                             sample_config)


def _refuse_existing(path: str, overwrite: bool) -> None:
    if Path(path).exists() and not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it, or choose another --out")


def cmd_eval_classifier(args: argparse.Namespace) -> None:
    from rear.evaluation.classifier import train_classifier_on

    _refuse_existing(args.out, args.overwrite)
    metrics = train_classifier_on(args.source, args.out, [args.config] if args.config else [], args.overrides,
                                  args.data_dir)
    s = metrics["source"]
    print(f"classifier: {args.out}  {metrics['train_images']} training images, accuracy {metrics['test_accuracy']:.2%} "
          f"on the {metrics['test_images']} of {s['test']} ({s['channels']} channel(s), {len(s['class_names'])} classes)")


def _extractor(args: argparse.Namespace):
    from rear.evaluation.evaluate import open_extractor

    return open_extractor(args.classifier, None if args.classifier else args.inception or None)


def cmd_eval_stats(args: argparse.Namespace) -> None:
    from rear.evaluation.evaluate import save_reference

    _refuse_existing(args.out, args.overwrite)
    extractor = _extractor(args)
    from rear.evaluation.evaluate import reference_images

    images = reference_images(args.source, extractor.image_size or 32, args.data_dir)
    path = save_reference(args.out, extractor.embed(images), images.shape[1], extractor.fingerprint)
    print(f"reference statistics of {len(images)} images: {path}")


def cmd_eval_score(args: argparse.Namespace) -> None:
    import json

    from rear.evaluation.evaluate import load_images, reference_for, score, write_metrics
    from rear.tokenizer.load import load_tokenizer

    extractor = _extractor(args)
    images, labels = load_images(args.samples)
    if args.tokenizer and (extractor.classifier is None or Path(args.reference).suffix == ".npz"):
        raise ValueError("--tokenizer (the ceiling) needs --classifier and a labelled --reference source such as "
                         "FOLDER:heldout or fashion-mnist:test")
    if extractor.classifier is not None:
        from rear.evaluation.evaluate import check_domain

        for warning in check_domain(images, labels, extractor.classifier):
            print(f"rear eval score: warning: {warning}", file=sys.stderr)
    tokenizer = load_tokenizer(args.tokenizer) if args.tokenizer else None
    # one read of a labelled reference, in the tokenizer's channels, serves the scores and the ceiling
    reference, read = reference_for(args.reference, extractor, images.shape[1], args.data_dir, tokenizer)
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
    from rear.data.store import TokenStore
    from rear.evaluation import diagnose as d
    from rear.tokenizer.load import load_tokenizer, read_codebook

    sample = sample_config(args, args.checkpoint, "diagnose")  # checked before anything is loaded
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
        from rear.evaluation.ceiling import report_ceiling, store_ceiling
        from rear.evaluation.classifier import load_classifier

        def ceiling() -> dict:
            found = store_ceiling(tokenizer, load_classifier(args.classifier), store, items, args.data_dir)
            report_ceiling(found, "rear diagnose", line=False)
            return found

        attempt("tokenizer_ceiling", ceiling)
    print(json.dumps(results, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))
        print(f"diagnostics: {args.out}")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    """This group's commands, each beside its handler above."""
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
    add_extractor_flags(score)
    score.add_argument("--tokenizer", help="the samples' tokenizer: also record its ceiling (the classifier's accuracy, "
                       "FID and KID of its reconstructions of the reference images); needs --classifier and a "
                       "labelled reference such as FOLDER:heldout")
    score.add_argument("--out", help="metrics JSON (default: metrics.json beside the samples)")
    score.add_argument("--data-dir")
    add_threads_flag(score)
    score.set_defaults(func=cmd_eval_score)
    stats = eval_commands.add_parser("stats", help="save reference statistics of a dataset",
                                     description="Compute and save reference statistics (.npz) of a dataset split, folder or .npz.")
    stats.add_argument("source", help="fashion-mnist:test, FOLDER:heldout (any source name), a plain image folder, or an .npz")
    add_extractor_flags(stats)
    stats.add_argument("--out", required=True)
    stats.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    stats.add_argument("--data-dir")
    add_threads_flag(stats)
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
    add_threads_flag(clf)
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
    add_sampling_flags(diagnose)
    add_threads_flag(diagnose)
    diagnose.set_defaults(func=cmd_diagnose)
