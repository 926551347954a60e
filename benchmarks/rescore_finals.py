"""Score a study's kept final samples with another study's classifier: one yardstick for two studies.

    python benchmarks/rescore_finals.py configs/fmnist/study_z64.yaml --classifier results/fashion_mnist/classifier \\
        --out results/fashion_mnist_z64/finals_on_z8_classifier.json

The Z = 64 study was scored by its own classifier (configs/fmnist/study_z64.yaml says why), so its FIDs
are not on the Z = 8 study's scale. Every final run keeps its 10,000 samples (OUT/runs/ARM-K/eval/final);
this embeds them with --classifier and scores them against the Fashion-MNIST test images embedded by
the same classifier: FID, sFID, KID, precision, recall and class accuracy per run, and per arm the mean
over seeds with the reAR / plain AR ratio of FID.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from rear.config import StudyConfig, merge  # noqa: E402
from rear.evaluation.evaluate import load_images, open_extractor, reference_for, score  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="the study whose final samples are scored")
    parser.add_argument("--classifier", required=True, help="the classifier folder to score them with")
    parser.add_argument("--out", required=True, help="JSON to write")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = merge(StudyConfig, args.config)
    extractor = open_extractor(args.classifier)
    reference, _ = reference_for("fashion-mnist:test", extractor, study.tokenizer.model.image_size, args.data_dir)
    runs, arms = {}, {}
    for folder in sorted((Path(study.out) / "runs").glob("*-*")):
        samples = folder / "eval" / "final" / "samples.npz"
        if not samples.is_file():
            continue
        images, labels = load_images(samples)
        metrics = score(extractor.embed(images), reference, labels)
        runs[folder.name] = {k: v for k, v in metrics.items() if k != "warnings"}
        arm = folder.name.rsplit("-", 1)[0]
        arms.setdefault(arm, []).append(runs[folder.name])
        print(folder.name, {k: round(v, 4) for k, v in runs[folder.name].items() if k in ("fid", "class_accuracy")})
    summary = {arm: {m: float(np.mean([r[m] for r in records])) for m in records[0] if isinstance(records[0][m], float)}
               | {"runs": len(records)} for arm, records in arms.items()}
    result = {"study": args.config, "classifier": args.classifier, "extractor": extractor.fingerprint,
              "reference": "fashion-mnist:test", "runs": runs, "arms": summary}
    if "ar" in summary and "rear" in summary:
        result["fid_ratio_rear_over_ar"] = summary["rear"]["fid"] / summary["ar"]["fid"]
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
