"""The study as a list of units, each recorded in results.json the moment it finishes.

shared       tokenizer, classifier, stores (training subset and test split), references (statistics
             of the test and validation splits, the FID noise floor, the tokenizer's ceiling)
per run      <arm>/<k>/step_<s>: train run k of the arm up to step s (resuming its checkpoint), then
             the FID of `curve_samples` at train.sample's CFG against the test split
per arm      <arm>/cfg_<g>: the arm's first run at CFG g, FID against the validation split only; the
             grid grows by `cfg_grid_extension` while the arm's minimum sits at its largest value
per run      <arm>/<k>/final: `final_samples` at the arm's chosen CFG against the test split, and the
             consistency diagnostics
per run      <arm>/<k>/test_cfg_<g>: matched guidance, `final_samples` at every other CFG that any arm
             evaluated on validation, against the test split (the final stands for the chosen CFG)
per run      <arm>/<k>/alignment: what the alignment loss could teach beyond the logits
             (diagnose.alignment_information) on held-out tokens
Runs go seed-major over plain AR and reAR (both first runs, then both second runs, ...), the
ablations last, so a partial study already compares the two arms it is about. The plan is drawn
again after every unit, as the grid's extension depends on what was measured.
"""
from __future__ import annotations

import dataclasses
import json
import shutil
import sys
import time
from functools import cached_property
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from rear.checkpoint import load_generator
from rear.config import ClassifierConfig, StudyConfig, TrainConfig, merge, to_dict
from rear.data.fashion_mnist import load_fashion_mnist, to_tensor
from rear.data.sources import fashion_mnist_source
from rear.data.store import TokenStore, pretokenize
from rear.evaluation import diagnose
from rear.evaluation.ceiling import tokenizer_ceiling
from rear.evaluation.classifier import load_classifier, train_classifier
from rear.evaluation.evaluate import load_images, load_reference, save_reference, score, to_classifier_input
from rear.evaluation.samples import GRID, write_samples
from rear.images import to_uint8
from rear.lock import locked
from rear.metrics import fid_sampling_error
from rear.study import report
from rear.study.ledger import Ledger, as_json
from rear.study.plan import (Unit, chosen_cfg, clock, estimate, eval_steps, matched_grid, run_order, split_indices,
                             validation_grid)
from rear.tokenizer.load import load_tokenizer, read_codebook
from rear.train.tokenizer import METRICS, fashion_mnist_images, train_tokenizer
from rear.train.trainer import CHECKPOINT, train
from rear.weights import state_fingerprint

# The four arms as overrides of the shared reAR training config.
ARMS: dict[str, dict] = {
    "ar": {"noise": {"enabled": False}, "generator": {"align": {"encode": False, "decode": False}}},
    "noisy": {"generator": {"align": {"encode": False, "decode": False}}},
    "embed": {"noise": {"enabled": False}},
    "rear": {},
}

# `--quick`: the same pipeline on a budget of minutes, written under `<out>-quick`.
QUICK = [
    "tokenizer.steps=60", "tokenizer.eval_size=1000", "classifier.epochs=1", "classifier.widths=[16,32,64]",
    "val_per_class=30", "floor_per_class=30", "train_per_class=30", "seeds.ar=2", "seeds.rear=2",
    "train.steps=40", "train.noise.anneal_end=30", "train.optim.warmup_steps=4", "train.checkpoint_every=20",
    "train.log_every=10", "train.generator.width=64", "train.generator.depth=2", "train.generator.heads=2",
    "train.generator.align.decode_layer=1", "train.generator.align.projection_dim=64",
    "curve_samples=100", "cfg_grid=[1.0,3.0]", "val_samples=100", "final_samples=200",
    "diagnose_count=200", "retok_samples=50", "sfid=false",
]

TEST_REF, VAL_REF = "test.npz", "validation.npz"


class Study:
    """Shared inputs, loaded on first use, and the units that use them."""

    def __init__(self, config: StudyConfig, ledger: Ledger) -> None:
        self.config, self.ledger = config, ledger
        self.out, self.results = Path(config.out), Path(config.results)
        self.steps = eval_steps(config)
        # The instruments every score depends on live beside the results (and are committed with
        # them): a lost scratch folder then costs only the reference statistics (recomputed) and the
        # checkpoints of unfinished runs (retrained from their start).
        instruments = Path(config.instruments) if config.instruments else self.results
        self.tokenizer_dir = instruments / "tokenizer"
        self.classifier_dir = Path(config.classifier_from or instruments) / "classifier"
        self.stores = {name: instruments / f"store-{name}" for name in ("train", "test")}

    # ------------------------------------------------------------ shared inputs
    @cached_property
    def fashion(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {split: load_fashion_mnist(split, self.config.data_dir) for split in ("train", "test")}

    @cached_property
    def splits(self) -> dict[str, np.ndarray]:
        return split_indices(self.fashion["train"][1], self.config)

    def real_images(self, split: str, part: str | None = None) -> np.ndarray:
        """uint8 [n, S, S, 3] of a split (or a part of the train split), at the tokenizer's size."""
        images = self.fashion[split][0]
        if part is not None:
            images = images[self.splits[part]]
        return to_uint8(to_tensor(images, self.config.tokenizer.model.image_size)).repeat(3, axis=-1)

    @cached_property
    def tokenizer(self):
        return load_tokenizer(self.tokenizer_dir)

    @cached_property
    def classifier(self):
        return load_classifier(self.classifier_dir)

    def embed(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self.classifier.embed(to_classifier_input(images, self.classifier))

    def score_images(self, images: np.ndarray, reference: dict[str, np.ndarray], labels: np.ndarray) -> dict:
        features = self.embed(images)
        if not self.config.sfid:
            features.pop("spatial")
        return {**score(features, reference, labels),
                "fid_sampling_sd": fid_sampling_error(features["pool"], reference["mu"], reference["sigma"])}

    @cached_property
    def references(self) -> dict[str, dict[str, np.ndarray]]:
        """Statistics of the test and validation images (computed on first use; scratch)."""
        folder = self.out / "references"
        if not all((folder / name).is_file() for name in (TEST_REF, VAL_REF)):
            folder.mkdir(parents=True, exist_ok=True)
            size = self.config.tokenizer.model.image_size
            for name, images in ((TEST_REF, self.real_images("test")), (VAL_REF, self.real_images("train", "validation"))):
                save_reference(folder / f".{name}", self.embed(images), size, self.classifier_fingerprint())
                (folder / f".{name}").replace(folder / name)
        return {name: load_reference(folder / name, extractor=self.classifier_fingerprint())
                for name in (TEST_REF, VAL_REF)}

    @cached_property
    def heldout(self) -> tuple[torch.Tensor, torch.Tensor]:
        return diagnose.heldout_tokens(TokenStore(self.stores["test"]), self.config.diagnose_count)

    # ------------------------------------------------------------ shared units
    def make_tokenizer(self) -> dict:
        c = self.config
        config = dataclasses.replace(c.tokenizer, out=str(self.tokenizer_dir), threads=c.threads, data_dir=c.data_dir)
        saved = self.tokenizer_dir / METRICS
        if c.instruments and not saved.is_file():
            raise FileNotFoundError(f"{saved.parent} holds no trained tokenizer to borrow; run the study that owns it "
                                    "first, or drop instruments to train one")
        if saved.is_file():  # trained earlier (or by hand with the same recipe), or borrowed: reuse it
            metrics = json.loads(saved.read_text())
            # the saved config read with today's defaults, so a field added since is not a change
            recipe = lambda d: {k: v for k, v in as_json(to_dict(d)).items()  # noqa: E731
                                if k not in ("out", "threads", "data_dir")}
            if not c.instruments and recipe(merge(type(config), metrics["config"])) != recipe(config):
                raise ValueError(f"{saved.parent} was trained with another tokenizer config; remove it or set out=...")
        else:
            metrics = train_tokenizer(config, *fashion_mnist_images(c.data_dir, config.model.image_size), progress=False)
        return {"psnr": metrics["psnr"], "codes_used": round(metrics["usage"] * config.model.codebook_size),
                "usage": metrics["usage"], "train_seconds": metrics["train_seconds"],
                "fingerprint": self.tokenizer.fingerprint()}

    def make_classifier(self) -> dict:
        """Trains the study's own classifier once; a borrowed one (`instruments`, `classifier_from`) is
        another study's yardstick and is only read, and one on disk is never retrained in place."""
        c, folder = self.config.classifier, self.classifier_dir
        saved = folder / "metrics.json"
        if self.config.classifier_from or self.config.instruments:
            if not saved.is_file():
                raise FileNotFoundError(f"{folder} holds no trained classifier to borrow; run the study that owns it "
                                        "first, or drop classifier_from/instruments to train one")
        elif saved.is_file():  # config.json read with today's defaults, so a newer field is not a change
            if merge(ClassifierConfig, json.loads((folder / "config.json").read_text())) != c:
                raise ValueError(f"{folder} was trained with another classifier config; restore that config, remove "
                                 "the folder, or set results=... and out=... for a new study")
        if saved.is_file():
            metrics = json.loads(saved.read_text())
        else:
            tensors = {s: (to_tensor(x, c.image_size), torch.from_numpy(y)) for s, (x, y) in self.fashion.items()}
            metrics = train_classifier(c, tensors["train"], tensors["test"], folder, progress=False)
        return {"test_acc": metrics["test_accuracy"], "fingerprint": self.classifier_fingerprint()}

    def classifier_fingerprint(self) -> str:
        return state_fingerprint(self.classifier.state_dict())

    def check_instruments(self) -> None:
        """The tokenizer and classifier on disk are the ones the ledger's units were measured with (by
        content, not by path): a file replaced in place would silently mix two studies in one ledger."""
        for unit, folder, current in (("tokenizer", self.tokenizer_dir, lambda: self.tokenizer.fingerprint()),
                                      ("classifier", self.classifier_dir, self.classifier_fingerprint)):
            recorded = self.ledger.units.get(unit, {}).get("fingerprint")
            if recorded is not None and folder.is_dir() and current() != recorded:
                raise ValueError(f"{folder} is not the {unit} this study measured with (weights sha256 {recorded[:16]}, "
                                 f"now {current()[:16]}); restore it (git checkout) or set results=... and out=... for "
                                 "a new study")

    def make_stores(self) -> dict:
        tokenizer, made = self.tokenizer, {}
        for split, subset in (("train", ("study-train", self.splits["train"])), ("test", None)):
            folder = self.stores[split]
            if not TokenStore.is_complete(folder):
                source = fashion_mnist_source(split, self.config.data_dir, tokenizer.channels, subset)
                pretokenize(source, tokenizer, folder, tokenizer_path=str(self.tokenizer_dir),
                            flip=self.config.flip and split == "train", progress=False)
            made[split] = len(TokenStore(folder))
        return {"train_images": made["train"], "test_images": made["test"],
                "validation_images": len(self.splits["validation"]), "floor_images": len(self.splits["floor"])}

    def make_references(self) -> dict:
        size = self.config.tokenizer.model.image_size
        reference, labels = self.references[TEST_REF], self.fashion["train"][1]
        floor = self.score_images(self.real_images("train", "floor"), reference, labels[self.splits["floor"]])
        memorized = self.score_images(self.real_images("train", "train"), reference, labels[self.splits["train"]])
        rfid = tokenizer_ceiling(self.tokenizer, self.classifier, to_tensor(self.fashion["test"][0], size))["fid"]
        return {"noise_floor": floor, "training_images": memorized, "tokenizer_rfid": rfid}

    # ------------------------------------------------------------ runs
    def run_config(self, arm: str, k: int) -> TrainConfig:
        c = self.config
        return merge(c.train, ARMS[arm], {
            "store": str(self.stores["train"]), "tokenizer": str(self.tokenizer_dir),
            "out_dir": str(self.run_dir(arm, k)), "seed": c.train.seed + k, "threads": c.threads})

    def run_dir(self, arm: str, k: int) -> Path:
        return self.out / "runs" / f"{arm}-{k}"

    def sample_and_score(self, model, checkpoint: Path, folder: Path, count: int, cfg: float, reference: str,
                         keep: bool = False) -> tuple[dict, float]:
        """Class-balanced samples of `model` (loaded from `checkpoint`) at CFG `cfg`, scored; (metrics, seconds)."""
        sample = dataclasses.replace(self.config.train.sample, cfg_scale=cfg)
        began = time.perf_counter()
        path = write_samples(model, self.tokenizer, folder, count, sample, batch_size=self.config.sample_batch_size,
                             provenance={"checkpoint": str(checkpoint)}, progress=False, overwrite=True)
        seconds = time.perf_counter() - began
        images, labels = load_images(path)
        metrics = self.score_images(images, self.references[reference], labels)
        shutil.rmtree(folder / "png")
        if not keep:
            shutil.rmtree(folder)
        return metrics, seconds

    def train_and_curve(self, arm: str, k: int, step: int, previous: int) -> dict:
        run = self.run_dir(arm, k)
        resume = (run / CHECKPOINT).is_dir()
        if not resume and run.exists():
            shutil.rmtree(run)  # killed before its first checkpoint: start clean, logs included
        began = time.perf_counter()
        train(self.run_config(arm, k), resume=resume, progress=False, until=step)
        train_seconds = time.perf_counter() - began
        metrics, sample_seconds = self.sample_and_score(
            load_generator(run / CHECKPOINT).eval(), run / CHECKPOINT, run / "eval" / f"step_{step}", self.config.curve_samples,
            self.config.train.sample.cfg_scale, TEST_REF)
        return {**metrics, "step": step, "cfg_scale": self.config.train.sample.cfg_scale,
                "train_steps": step - previous, "train_seconds": train_seconds, "sample_seconds": sample_seconds}

    def cfg_point(self, arm: str, cfg: float) -> dict:
        run = self.run_dir(arm, 0)
        metrics, seconds = self.sample_and_score(load_generator(run / CHECKPOINT).eval(), run / CHECKPOINT,
                                                 run / "eval" / f"cfg_{cfg:g}", self.config.val_samples, cfg, VAL_REF)
        return {**metrics, "cfg_scale": cfg, "reference": "validation", "sample_seconds": seconds}

    def final(self, arm: str, k: int) -> dict:
        c, run = self.config, self.run_dir(arm, k)
        cfg = chosen_cfg(self.ledger.units, arm, validation_grid(self.ledger.units, arm, c))
        folder, model = run / "eval" / "final", load_generator(run / CHECKPOINT).eval()
        metrics, seconds = self.sample_and_score(model, run / CHECKPOINT, folder, c.final_samples, cfg, TEST_REF,
                                                 keep=True)
        if k == 0:  # write_samples' grid: one row per class
            shutil.copyfile(folder / GRID, self.results / f"grid_{arm}.png")
        tokens, labels = self.heldout
        sample = dataclasses.replace(c.train.sample, cfg_scale=cfg)
        return {**metrics, "cfg_scale": cfg, "sample_seconds": seconds,
                "retok_consistency": diagnose.retokenization_consistency(
                    model, self.tokenizer, torch.arange(c.retok_samples) % model.config.num_classes, sample),
                "correct_token_clean": diagnose.token_accuracy(model, tokens, labels, 0.0),
                "correct_token_noisy": diagnose.token_accuracy(model, tokens, labels, c.diagnose_noise)}

    def test_cfg_point(self, arm: str, k: int, cfg: float) -> dict:
        """Matched guidance: run k at CFG `cfg`, as its final is at the chosen one (test split)."""
        c, run = self.config, self.run_dir(arm, k)
        model = load_generator(run / CHECKPOINT).eval()
        metrics, seconds = self.sample_and_score(model, run / CHECKPOINT, run / "eval" / f"test_cfg_{cfg:g}",
                                                 c.final_samples, cfg, TEST_REF)
        sample = dataclasses.replace(c.train.sample, cfg_scale=cfg)
        return {**metrics, "cfg_scale": cfg, "sample_seconds": seconds,
                "retok_consistency": diagnose.retokenization_consistency(
                    model, self.tokenizer, torch.arange(c.retok_samples) % model.config.num_classes, sample)}

    def alignment(self, arm: str, k: int) -> dict:
        """diagnose.alignment_information of run k on class-balanced held-out tokens."""
        store = TokenStore(self.stores["test"])
        items = diagnose.balanced_items(np.asarray(store.labels), self.config.diagnose_count)
        tokens, labels = store.batch(items, np.zeros_like(items))  # [B, N], [B]
        model = load_generator(self.run_dir(arm, k) / CHECKPOINT).eval()
        return {**diagnose.alignment_information(model, tokens, labels, read_codebook(self.tokenizer_dir)[0]),
                "count": len(items)}

    # ------------------------------------------------------------ the plan
    def units(self) -> list[Unit]:
        """Every unit of the study as far as the records so far decide it (the grid may still grow)."""
        c, units_done = self.config, self.ledger.units
        units = [Unit("tokenizer", self.make_tokenizer, [("fixed", 900)]),
                 Unit("classifier", self.make_classifier, [("fixed", 300)]),
                 Unit("stores", self.make_stores, [("fixed", 120)]),
                 Unit("references", self.make_references, [("fixed", 120)])]
        matched = matched_grid(units_done, c) if c.matched_cfg else []
        for arm, k in run_order(c):
            previous = 0
            for step in self.steps:
                units.append(Unit(f"{arm}/{k}/step_{step}", self._bind(self.train_and_curve, arm, k, step, previous),
                                  [(f"train:{arm}", step - previous), ("sample", c.curve_samples)]))
                previous = step
            if k == 0:
                units += [Unit(f"{arm}/cfg_{g:g}", self._bind(self.cfg_point, arm, g), [("sample", c.val_samples)])
                          for g in validation_grid(units_done, arm, c)]
            units.append(Unit(f"{arm}/{k}/final", self._bind(self.final, arm, k),
                              [("sample", c.final_samples + c.retok_samples)]))
            chosen = units_done.get(f"{arm}/0/final", {}).get("cfg_scale")
            units += [Unit(f"{arm}/{k}/test_cfg_{g:g}", self._bind(self.test_cfg_point, arm, k, g),
                           [("sample", c.final_samples + c.retok_samples)]) for g in matched if g != chosen]
            units.append(Unit(f"{arm}/{k}/alignment", self._bind(self.alignment, arm, k), [("fixed", 10)]))
        return units

    @staticmethod
    def _bind(function: Callable[..., dict], *args) -> Callable[[], dict]:
        return lambda: function(*args)


def quick_config(config: StudyConfig) -> StudyConfig:
    """`--quick`: QUICK's budget, everything (results included) under the scratch folder `<out>-quick`."""
    return merge(config, QUICK, {"out": f"{config.out}-quick", "results": f"{config.out}-quick/results"})


def run_study(config: StudyConfig, quick: bool = False) -> Path:
    """Run every unit not yet in results.json; returns the results folder."""
    if quick:
        config = quick_config(config)
    seeds = config.seeds
    if set(seeds) != set(ARMS) or min(seeds.values()) < 0 or min(seeds["ar"], seeds["rear"]) < 1:
        raise ValueError(f"seeds must give every arm of {list(ARMS)} its number of runs (0 leaves an ablation out; "
                         f"plain AR and reAR need one or more), got {dict(seeds)}")
    if not (config.train.noise.enabled and config.train.generator.align.encode and config.train.generator.align.decode):
        raise ValueError("the study's train config must be the full reAR recipe (noise and both alignment heads on); "
                         "the arms switch parts off")
    threads = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _run(config)
    finally:
        torch.set_num_threads(threads)


@locked(lambda config: config.results)
def _run(config: StudyConfig) -> Path:
    ledger = Ledger(config.results, config)
    study = Study(config, ledger)
    for unit, folder in (("tokenizer", study.tokenizer_dir), ("classifier", study.classifier_dir),
                         ("stores", study.stores["train"])):
        if ledger.done(unit) and not folder.is_dir():
            raise FileNotFoundError(f"{ledger.path} records the {unit} but {folder} is missing; restore it (it is "
                                    "committed with the results) or set results=... and out=... for a new study")
    study.check_instruments()
    began = time.perf_counter()
    while True:  # the plan is drawn again after every unit: the CFG grid's extension depends on results
        units = study.units()
        unit = next((u for u in units if not ledger.done(u.key)), None)
        if unit is None:
            break
        done = sum(ledger.done(u.key) for u in units)
        eta = estimate(units, ledger)
        print(f"[study {done}/{len(units)} done, {clock(time.perf_counter() - began)} this sitting, "
              f"ETA {clock(eta)}] {unit.key} ...", flush=True)
        started = time.perf_counter()
        result = unit.run()
        ledger.record(unit.key, result, time.perf_counter() - started, lambda units: report.summarize(units, config))
        print(f"    {report.describe(unit.key, ledger[unit.key])}", flush=True)
        report.write(config, ledger.units, ledger.cpu_hours(), study.out)
    ledger.write(report.summarize(ledger.units, config))
    report.write(config, ledger.units, ledger.cpu_hours(), study.out)
    print(f"study complete: {ledger.path} ({ledger.cpu_hours():.2f} CPU-hours)", file=sys.stderr)
    return Path(config.results)
