"""Issue 24's evidence: CCA fine-tunes of the Fashion-MNIST RAR study's final runs (docs/cca.md).

    python benchmarks/cca_fmnist.py [--threads 1]
    python benchmarks/cca_fmnist.py --arms rear --lams 1 --set generator.align.weight=0 \
        --results results/fashion_mnist_cca_noalign --out runs/cca_noalign      # the reAR regularizers off
    python benchmarks/cca_fmnist.py --report     # table.md of each results folder, docs/cca.md's blocks

Every unit writes its record into results/fashion_mnist_cca/results.json when it finishes (rear's study
ledger); running the command again skips what is done and resumes a half-trained fine-tune.
  {arm}/lam_{lam}      fine-tune run 0 of the arm (plain AR, reAR) with that lam; 2,000 samples at CFG 1
                       scored against the validation images: lam is chosen there, never on the test split
  {arm}/{k}/finetune   runs 1 and 2 fine-tuned with the chosen lam (run 0's is its sweep run)
  {arm}/{k}/test       10,000 samples of fine-tune k at CFG 1 against the test images
  speed                images/s of the reAR run 0 guided (its chosen CFG, a doubled batch) and of its
                       fine-tune guidance-free, the same batch of 250, interleaved in one run
The bases' own scores (CFG 1 and their chosen CFG, 10,000 test samples) and their validation points are
read from the study's committed results.json, measured with the same classifier, references and counts.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from own_images import cpu_flags  # noqa: E402
from rear.checkpoint import load_generator  # noqa: E402
from rear.config import StudyConfig, TrainConfig, merge  # noqa: E402
from rear.study.ledger import Ledger  # noqa: E402
from rear.study.pipeline import TEST_REF, VAL_REF, Study  # noqa: E402
from rear.study.tables import spread, worse  # noqa: E402
from rear.train.trainer import CHECKPOINT, train  # noqa: E402

ARMS = ("ar", "rear")
METRICS = ("fid", "sfid", "kid", "precision", "recall", "class_accuracy", "inception_score")


@dataclass
class CCAStudyConfig:
    """What the CCA evidence runs: the study whose runs it fine-tunes, the fine-tune recipe, the lam grid."""

    study: str = "configs/fmnist/study.yaml"
    recipe: str = "configs/fmnist/cca.yaml"
    recipe_overrides: list[str] = field(default_factory=list)  # key=value onto the recipe (e.g. steps=320)
    arms: list[str] = field(default_factory=lambda: list(ARMS))  # which of the study's arms to fine-tune
    # thu-ml/CCA's lam 1000 and 100 collapse these small models (recall 0.003 and 0.097 at validation); 0
    # is the control without negatives (what the fine-tune alone does), 1 and 3 the weaker pushes
    lams: list[float] = field(default_factory=lambda: [0.0, 1.0, 3.0, 10.0, 100.0, 1000.0])
    beta: float = 0.02
    seeds: int = 3
    val_samples: int = 2000
    final_samples: int = 10000
    speed_batch: int = 250
    out: str = "runs/cca"
    results: str = "results/fashion_mnist_cca"
    threads: int = 1


class Evidence:
    def __init__(self, config: CCAStudyConfig) -> None:
        self.config = config
        self.study_config = merge(StudyConfig, str(ROOT / config.study))
        self.study = Study(self.study_config, Ledger(self.study_config.results, self.study_config))
        self.base = self.study.ledger.units  # the study's records: read only
        self.ledger = Ledger(config.results, config)

    # ------------------------------------------------------------ units
    def finetune(self, arm: str, k: int, lam: float) -> dict:
        c, study = self.config, self.study
        out = Path(c.out) / f"{arm}-{k}-lam{lam:g}"
        overrides = [f"cca.init={study.run_dir(arm, k) / CHECKPOINT}", f"cca.lam={lam}", f"cca.beta={c.beta}",
                     f"out_dir={out}", f"threads={c.threads}", f"store={study.stores['train']}",
                     f"tokenizer={study.tokenizer_dir}", f"seed={self.study_config.train.seed + k}"]
        if arm == "ar":  # plain AR has no alignment heads
            overrides += ["generator.align.encode=false", "generator.align.decode=false"]
        config = merge(TrainConfig, str(ROOT / c.recipe), [*c.recipe_overrides, *overrides])
        resume = (out / CHECKPOINT).is_dir()
        if not resume and out.exists():
            shutil.rmtree(out)  # killed before its first checkpoint
        began = time.perf_counter()
        train(config, resume=resume, progress=False)
        return {"checkpoint": str(out / CHECKPOINT), "lam": lam, "beta": c.beta, "steps": config.steps,
                "base_steps": self.study_config.train.steps, "train_seconds": time.perf_counter() - began}

    def score(self, checkpoint: str, count: int, reference: str, folder: Path) -> dict:
        model = load_generator(checkpoint).eval()
        metrics, seconds = self.study.sample_and_score(model, Path(checkpoint), folder, count, 1.0, reference)
        return {**metrics, "cfg_scale": 1.0, "sample_seconds": seconds}

    def sweep_point(self, arm: str, lam: float) -> dict:
        made = self.finetune(arm, 0, lam)
        scored = self.score(made["checkpoint"], self.config.val_samples, VAL_REF,
                            Path(self.config.out) / "eval" / f"{arm}-lam{lam:g}")
        return {**made, **scored, "reference": "validation"}

    def chosen_lam(self, arm: str) -> float:
        points = {lam: self.ledger[f"{arm}/lam_{lam:g}"]["fid"] for lam in self.config.lams}
        return min(points, key=points.get)

    def checkpoint(self, arm: str, k: int) -> str:
        key = f"{arm}/lam_{self.chosen_lam(arm):g}" if k == 0 else f"{arm}/{k}/finetune"
        return self.ledger[key]["checkpoint"]

    def test_point(self, arm: str, k: int) -> dict:
        return {**self.score(self.checkpoint(arm, k), self.config.final_samples, TEST_REF,
                             Path(self.config.out) / "eval" / f"{arm}-{k}-test"), "reference": "test"}

    def speed(self) -> dict:
        base_key = "rear/0/final"
        cfg = self.base[base_key]["cfg_scale"]
        guided = load_generator(self.study.run_dir("rear", 0) / CHECKPOINT).eval()
        free = load_generator(self.checkpoint("rear", 0)).eval()
        labels = torch.arange(self.config.speed_batch) % guided.config.num_classes
        sample = self.study_config.train.sample
        times: dict[str, list[float]] = {"guided": [], "guidance_free": []}
        for _ in range(3):  # interleaved, the best of three each: the machine is shared
            for name, model, scale in (("guided", guided, cfg), ("guidance_free", free, 1.0)):
                began = time.perf_counter()
                model.generate(labels, sample, cfg_scale=scale, rng=torch.Generator().manual_seed(0))
                times[name].append(time.perf_counter() - began)
        rates = {name: self.config.speed_batch / min(t) for name, t in times.items()}
        return {"images_per_s_guided": rates["guided"], "images_per_s_guidance_free": rates["guidance_free"],
                "images_per_s_ratio": rates["guidance_free"] / rates["guided"], "guided_cfg": cfg,
                "batch": self.config.speed_batch, "cpu": cpu_flags(), "threads": torch.get_num_threads()}

    # ------------------------------------------------------------ the plan and the summary
    def units(self) -> list[tuple[str, Callable[[], dict]]]:
        c, plan = self.config, []
        for arm in c.arms:
            plan += [(f"{arm}/lam_{lam:g}", lambda arm=arm, lam=lam: self.sweep_point(arm, lam)) for lam in c.lams]
        for arm in c.arms:
            for k in range(1, c.seeds):
                plan.append((f"{arm}/{k}/finetune", lambda arm=arm, k=k: self.finetune(arm, k, self.chosen_lam(arm))))
            plan += [(f"{arm}/{k}/test", lambda arm=arm, k=k: self.test_point(arm, k)) for k in range(c.seeds)]
        if "rear" in c.arms:
            plan.append(("speed", self.speed))
        return plan

    def summarize(self, units: dict) -> dict:
        c, arms = self.config, {}
        for arm in c.arms:
            if not all(f"{arm}/lam_{lam:g}" in units for lam in c.lams):
                continue
            seeds = [k for k in range(c.seeds) if f"{arm}/{k}/test" in units]
            entry = {"lam": self.chosen_lam(arm), "seeds": seeds}
            for metric in METRICS:  # None: a metric the study's older records lack (KID)
                entry[f"{metric}_base_cfg1"] = [self.base[f"{arm}/{k}/test_cfg_1"].get(metric) for k in seeds]
                entry[f"{metric}_base_chosen_cfg"] = [self.base[f"{arm}/{k}/final"].get(metric) for k in seeds]
                entry[f"{metric}_cca_cfg1"] = [units[f"{arm}/{k}/test"][metric] for k in seeds]
            entry["base_chosen_cfg"] = [self.base[f"{arm}/{k}/final"]["cfg_scale"] for k in seeds]
            entry["sweep"] = {f"{lam:g}": {m: units[f"{arm}/lam_{lam:g}"][m] for m in ("fid", "precision", "recall",
                                                                                       "class_accuracy")}
                              for lam in c.lams}
            entry["base_validation"] = {key.split("_", 1)[1]: {m: rec[m] for m in ("fid", "precision", "recall",
                                                                                   "class_accuracy")}
                                        for key, rec in self.base.items() if key.startswith(f"{arm}/cfg_")}
            finetunes = [units[f"{arm}/lam_{entry['lam']:g}"]] + [units[f"{arm}/{k}/finetune"] for k in range(1, c.seeds)
                                                                  if f"{arm}/{k}/finetune" in units]
            entry["finetune_steps"], entry["base_steps"] = finetunes[0]["steps"], finetunes[0]["base_steps"]
            entry["finetune_cpu_seconds"] = float(np.mean([f["train_seconds"] for f in finetunes]))
            # the study's names: fid_base_cfg1, fid_base_chosen_cfg, fid_cca_cfg1 (issue 24's results file)
            arms[arm] = entry
        summary = {"arms": arms, "complete": all(key in units for key, _ in self.units())}
        if "speed" in units:
            summary["images_per_s_ratio"] = units["speed"]["images_per_s_ratio"]
        return summary

    def run(self) -> Path:
        for key, unit in self.units():
            if self.ledger.done(key):
                continue
            print(f"[cca] {key} ...", flush=True)
            began = time.perf_counter()
            result = unit()
            self.ledger.record(key, result, time.perf_counter() - began, self.summarize)
            shown = {k: round(v, 4) for k, v in result.items() if k in ("fid", "precision", "recall", "images_per_s_ratio")}
            print(f"    {shown}, {time.perf_counter() - began:.0f} s", flush=True)
        return self.ledger.path


SHOWN = (("fid", "FID", 2, False), ("sfid", "sFID", 2, False), ("kid", "KID", 4, False),
         ("precision", "precision", 3, False), ("recall", "recall", 3, False),
         ("class_accuracy", "class acc.", 1, True), ("inception_score", "IS", 2, False))


def cell(values: list, digits: int, percent: bool) -> str:
    """The study's cell (rear.study.tables.spread) of the values present (the bases' older records lack KID)."""
    return spread([v for v in values if v is not None], percent, digits)


def render(data: dict) -> str:
    """table.md of results.json: the three settings per arm on every metric, the lam sweep beside the
    base's CFG grid (validation), the cost and the speed."""
    names = {"ar": "plain AR", "rear": "reAR"}
    shown = SHOWN
    lines = ["# CCA fine-tunes of the Fashion-MNIST RAR study's runs (`python benchmarks/cca_fmnist.py --report`)", "",
             f"Status: {'complete' if data.get('complete') else '**unfinished** (the finished units only)'}; "
             f"{data.get('cpu_hours', 0):.2f} CPU-hours. Test split, 10,000 samples per run and setting; cells "
             "mean ± sd over seeds (min-max). The bases' rows are the study's own records (results/fashion_mnist). "
             "Columns: the metrics on which CCA guidance-free is worse than the base at its chosen CFG first.", ""]
    if data["config"]["recipe_overrides"]:
        lines += ["The fine-tune's recipe with " + ", ".join(f"`{o}`" for o in data["config"]["recipe_overrides"]) + ".", ""]
    for arm, entry in data["arms"].items():
        chosen = ", ".join(f"{g:g}" for g in sorted(set(entry["base_chosen_cfg"])))

        def against(metric: str) -> bool:  # CCA guidance-free worse than the base at its chosen CFG
            a = [v for v in entry[f"{metric}_cca_cfg1"] if v is not None]
            b = [v for v in entry[f"{metric}_base_chosen_cfg"] if v is not None]
            return bool(a and b) and worse(metric, np.mean(a) - np.mean(b))

        shown = sorted(shown, key=lambda s: not against(s[0]))  # the metrics that go against CCA first
        lines += [f"## {names[arm]}: lam = {entry['lam']:g} (chosen on validation), {len(entry['seeds'])} runs", "",
                  "| setting | " + " | ".join(title for _, title, _, _ in shown) + " |",
                  "| --- " * (len(shown) + 1) + "|"]
        for key, label in (("base_cfg1", "base, CFG 1"), ("base_chosen_cfg", f"base, its chosen CFG ({chosen})"),
                           ("cca_cfg1", "CCA, CFG 1 (guidance-free)")):
            lines.append(f"| {label} | " + " | ".join(cell(entry[f'{m}_{key}'], d, p) for m, _, d, p in shown) + " |")
        fid_cca, fid_chosen = np.mean(entry["fid_cca_cfg1"] or [np.nan]), np.mean(entry["fid_base_chosen_cfg"] or [np.nan])
        lines += ["", f"Guidance-free FID of the CCA model / the base's at its chosen CFG: {fid_cca / fid_chosen:.3f} "
                  "(target: <= 1.1). Fine-tune: "
                  f"{entry['finetune_steps']} steps = {entry['finetune_steps'] / entry['base_steps']:.0%} of the base's "
                  f"{entry['base_steps']} (target: <= 10%), {entry['finetune_cpu_seconds'] / 60:.1f} CPU-minutes each.", "",
                  "Validation split, 2,000 samples, run 0: the lam sweep (CFG 1) beside the base's CFG grid:", "",
                  "| point | FID | precision | recall | class acc. |", "| --- | --- | --- | --- | --- |"]
        for lam, p in entry["sweep"].items():
            lines.append(f"| CCA lam {lam} | {p['fid']:.2f} | {p['precision']:.3f} | {p['recall']:.3f} | "
                         f"{100 * p['class_accuracy']:.1f}% |")
        for cfg, p in sorted(entry["base_validation"].items(), key=lambda kv: float(kv[0])):
            lines.append(f"| base CFG {cfg} | {p['fid']:.2f} | {p['precision']:.3f} | {p['recall']:.3f} | "
                         f"{100 * p['class_accuracy']:.1f}% |")
        lines.append("")
    if "speed" in data.get("units", {}):
        s = data["units"]["speed"]
        lines += [f"Sampling speed (reAR run 0, batch {s['batch']}, {s['cpu']}, {s['threads']} thread, the best of three "
                  f"interleaved): guided at CFG {s['guided_cfg']:g} {s['images_per_s_guided']:.1f} images/s, the CCA "
                  f"model guidance-free {s['images_per_s_guidance_free']:.1f} images/s: "
                  f"**{s['images_per_s_ratio']:.2f}x** (target: >= 1.8x).", ""]
    return "\n".join(lines)


DOC = ROOT / "docs" / "cca.md"
BLOCK = re.compile(r"(<!-- generated by `python benchmarks/cca_fmnist.py --report`: (\w+); edit the results, not this -->\n)"
                   r"(.*?)(<!-- end of the generated block -->)", re.S)
MAIN, NOALIGN = "results/fashion_mnist_cca", "results/fashion_mnist_cca_noalign"


def render_alignment(kept: dict, off: dict) -> str:
    """The reAR arm's CCA fine-tunes with the alignment loss kept (weight 1) and off (weight 0), same lam,
    same base runs: the test-split metrics, and their paired differences (off - kept, base run by base run)."""
    a, b = kept["arms"]["rear"], off["arms"]["rear"]
    seeds = [k for k in a["seeds"] if k in b["seeds"]]

    def values(entry: dict, metric: str) -> list[float]:
        return [v for k, v in zip(entry["seeds"], entry[f"{metric}_cca_cfg1"]) if k in seeds]

    # off - kept, base run by base run, of every metric both sides have
    deltas = {m: np.array([x - y for x, y in zip(values(b, m), values(a, m)) if x is not None and y is not None])
              for m, _, _, _ in SHOWN}
    # the metrics better with the loss off (against the recipe's choice) first
    shown = sorted(SHOWN, key=lambda s: not (deltas[s[0]].size and worse(s[0], -deltas[s[0]].mean())))
    lines = [f"reAR bases, CCA lam {a['lam']:g} ({b['lam']:g} with the loss off), {len(seeds)} base runs, 10,000 test "
             "samples at CFG 1; cells mean ± sd (min-max) over runs. Columns: those better with the loss off first.", "",
             "| fine-tune | " + " | ".join(t for _, t, _, _ in shown) + " |", "| --- " * (len(shown) + 1) + "|"]
    for label, entry in (("alignment loss kept (weight 1)", a), ("alignment loss off (weight 0)", b)):
        lines.append(f"| {label} | " + " | ".join(cell(values(entry, m), d, p) for m, _, d, p in shown) + " |")
    diffs = []
    for m, title, d, p in shown:
        if not deltas[m].size:
            continue
        delta = deltas[m] * (100 if p else 1)
        sd = f" ± {delta.std(ddof=1):.{d}f}" if len(delta) > 1 else ""
        diffs.append(f"{title} {delta.mean():+.{d}f}{sd}{' pt' if p else ''}"
                     f"{' (worse off)' if worse(m, delta.mean()) else ''}")
    lines += ["", "Off - kept, paired by base run (mean ± sd): " + "; ".join(diffs) + ".", ""]
    return "\n".join(lines)


def rendered_blocks() -> dict[str, str]:
    """docs/cca.md's generated blocks by name, from the committed results.json files."""
    def read(folder: str) -> dict:
        return json.loads((ROOT / folder / "results.json").read_text())

    main_data = read(MAIN)
    blocks = {"table": "\n".join(line.replace("## ", "### ", 1) if line.startswith("## ") else line
                                  for line in render(main_data).splitlines()[2:]) + "\n"}
    if (ROOT / NOALIGN / "results.json").is_file():
        blocks["alignment"] = render_alignment(main_data, read(NOALIGN)) + "\n"
    return blocks


def document_blocks(text: str) -> dict[str, str]:
    """The generated blocks a document holds, by name."""
    return {m.group(2): m.group(3) for m in BLOCK.finditer(text)}


def write_docs() -> None:
    blocks = rendered_blocks()
    text = DOC.read_text()
    DOC.write_text(BLOCK.sub(lambda m: m.group(1) + blocks.get(m.group(2), m.group(3)) + m.group(4), text))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--report", action="store_true",
                        help="compute nothing: write each results folder's table.md and docs/cca.md's blocks")
    parser.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    parser.add_argument("--lams", nargs="+", type=float, help="the lam grid (default: CCAStudyConfig's)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="an override of the fine-tune's recipe (repeat for more)")
    parser.add_argument("--results", default=CCAStudyConfig.results)
    parser.add_argument("--out", default=CCAStudyConfig.out)
    args = parser.parse_args()
    if args.report:
        for folder in (MAIN, NOALIGN):
            if (ROOT / folder / "results.json").is_file():
                (ROOT / folder / "table.md").write_text(render(json.loads((ROOT / folder / "results.json").read_text())))
                print(f"wrote {folder}/table.md")
        write_docs()
        print(f"wrote {DOC.relative_to(ROOT)}'s generated blocks")
        return
    torch.set_num_threads(args.threads)
    print(f"cpu: {cpu_flags()}, {args.threads} thread(s)")
    config = CCAStudyConfig(threads=args.threads, arms=args.arms, recipe_overrides=args.set, results=args.results,
                            out=args.out, **({"lams": args.lams} if args.lams else {}))
    print(f"results: {Evidence(config).run()}")


if __name__ == "__main__":
    main()
