"""What a reader sees of a study: the summary in results.json, table.md, and the plots and grids.

Everything here is derived from the unit records, so it is rewritten after every unit and a partial
study always shows what it has.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from rear.config import StudyConfig

NAMES = {"ar": "plain AR", "noisy": "noisy context only", "embed": "embedding alignment only", "rear": "reAR"}
COLORS = {"ar": "tab:blue", "noisy": "tab:green", "embed": "tab:purple", "rear": "tab:red"}
# results.json name <- score() name
METRICS = {"fid": "fid", "is": "inception_score", "precision": "precision", "recall": "recall",
           "class_acc": "class_accuracy", "retok_consistency": "retok_consistency",
           "correct_token_clean": "correct_token_clean", "correct_token_noisy": "correct_token_noisy"}


def _steps(config: StudyConfig) -> list[int]:
    from rear.study.pipeline import eval_steps

    return eval_steps(config)


def summarize(units: dict[str, dict], config: StudyConfig) -> dict:
    """The per-arm lists (one value per finished run), curves, chosen CFG and reference figures."""
    steps = _steps(config)
    arms = {}
    for arm, runs in config.seeds.items():
        if not runs:  # an ablation this study leaves out
            continue
        finals = [(k, units[f"{arm}/{k}/final"]) for k in range(runs) if f"{arm}/{k}/final" in units]
        grid = {f"{g:g}": units[f"{arm}/cfg_{g:g}"]["fid"] for g in config.cfg_grid if f"{arm}/cfg_{g:g}" in units}
        arms[arm] = {
            "seeds": [config.train.seed + k for k, _ in finals],
            **{name: [record[key] for _, record in finals] for name, key in METRICS.items()},
            "cfg_scale": finals[0][1]["cfg_scale"] if finals else None,
            "cfg_grid_validation_fid": grid,
            "curve": {"steps": steps, "seeds": [config.train.seed + k for k in range(runs)],
                      "fid": [[units.get(f"{arm}/{k}/step_{s}", {}).get("fid") for k in range(runs)] for s in steps]},
        }
    summary: dict = {"arms": arms, "complete": all(len(a["fid"]) == config.seeds[arm] for arm, a in arms.items())}
    if "references" in units:
        refs = units["references"]
        summary["noise_floor_fid"] = refs["noise_floor"]["fid"]
        summary["training_images_fid"] = refs["training_images"]["fid"]
    if "tokenizer" in units:
        summary["tokenizer"] = {"psnr": units["tokenizer"]["psnr"], "codes_used": units["tokenizer"]["codes_used"],
                                "rfid": units.get("references", {}).get("tokenizer_rfid")}
    if "classifier" in units:
        summary["classifier"] = {"test_acc": units["classifier"]["test_acc"]}
    return summary


def describe(key: str, record: dict) -> str:
    """One line about a finished unit."""
    parts = [f"{record['seconds']:.0f} s"]
    if "fid" in record:
        parts.insert(0, f"FID {record['fid']:.2f} ({record['num_samples']} samples at CFG {record['cfg_scale']:g})")
    if "retok_consistency" in record:
        parts.insert(1, f"class acc {record['class_accuracy']:.1%}, re-tokenization {record['retok_consistency']:.1%}")
    if "correct_token_clean" in record:
        parts.insert(2, f"correct tokens {record['correct_token_clean']:.1%} clean / {record['correct_token_noisy']:.1%} noisy")
    if "implied_cosine" in record:
        head = "-" if record["decode_head_cosine"] is None else f"{record['decode_head_cosine']:.3f}"
        parts.insert(0, f"cosine to the next code: constant {record['constant_cosine']:.3f}, decode head {head}, "
                        f"softmax-implied {record['implied_cosine']:.3f}")
    if key == "references":
        parts.insert(0, f"noise floor FID {record['noise_floor']['fid']:.2f}, training images FID "
                        f"{record['training_images']['fid']:.2f}, tokenizer rFID {record['tokenizer_rfid']:.2f}")
    if key == "tokenizer":
        parts.insert(0, f"PSNR {record['psnr']:.2f} dB, {record['codes_used']} codes used")
    if key == "classifier":
        parts.insert(0, f"test accuracy {record['test_acc']:.2%}")
    return ", ".join(parts)


# ------------------------------------------------------------------ numbers
def spread(values: list[float], percent: bool = False, digits: int = 2) -> str:
    """'mean ± std (min-max)' over seeds, or the one value."""
    if not values:
        return "-"
    scale, unit = (100, "%") if percent else (1, "")
    v = np.asarray(values, dtype=float) * scale
    if len(v) == 1:
        return f"{v[0]:.{digits}f}{unit}"
    return f"{v.mean():.{digits}f} ± {v.std(ddof=1):.{digits}f}{unit} ({v.min():.{digits}f}-{v.max():.{digits}f})"


def difference(a: list[float], b: list[float]) -> tuple[float, float]:
    """(mean(a) - mean(b), its standard error from the seed spreads; nan when a side has one run)."""
    if not a or not b:
        return math.nan, math.nan
    va = np.var(a, ddof=1) / len(a) if len(a) > 1 else math.nan
    vb = np.var(b, ddof=1) / len(b) if len(b) > 1 else math.nan
    return float(np.mean(a) - np.mean(b)), float(math.sqrt(va + vb))


def table(summary: dict, config: StudyConfig, cpu_hours: float, commit) -> str:
    arms, lines = summary["arms"], []
    status = "complete" if summary["complete"] else "**unfinished** (figures below cover the finished runs only)"
    backbone = config.train.generator.backbone.value
    lines += [f"# Fashion-MNIST study ({backbone} backbone): plain AR, its ablations and reAR (`rear study`)", "",
              f"Status: {status}; {cpu_hours:.2f} CPU-hours so far; commit {commit}.", "",
              f"Final scores: {config.final_samples} class-balanced samples per run at the arm's CFG "
              "(chosen on the validation split), domain-classifier features, against the Fashion-MNIST "
              "test images. Cells: mean ± std over seeds (min-max).", "",
              "| arm | runs | CFG | FID | IS | precision | recall | class acc. | re-tokenization | correct-token clean "
              f"| correct-token noisy (r={config.diagnose_noise:g}) |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arm, a in arms.items():
        cfg = "-" if a["cfg_scale"] is None else f"{a['cfg_scale']:g}"
        lines.append(f"| {NAMES[arm]} | {len(a['fid'])}/{config.seeds[arm]} | {cfg} | {spread(a['fid'])} | {spread(a['is'])} "
                     f"| {spread(a['precision'], digits=3)} | {spread(a['recall'], digits=3)} "
                     f"| {spread(a['class_acc'], True, 1)} | {spread(a['retok_consistency'], True, 1)} "
                     f"| {spread(a['correct_token_clean'], True, 1)} | {spread(a['correct_token_noisy'], True, 1)} |")
    if "noise_floor_fid" in summary:
        C = config.classifier.num_classes
        lines += ["", f"Reference points: FID noise floor ({config.floor_per_class * C} held-out real training images "
                  f"against the test images) **{summary['noise_floor_fid']:.2f}**; the generator's "
                  f"{config.train_per_class * C or 'all'} training images against the test images "
                  f"{summary['training_images_fid']:.2f} (what a model that memorised them would score); tokenizer "
                  f"reconstructions of the test images {summary['tokenizer']['rfid']:.2f} (its ceiling); classifier "
                  f"test accuracy {summary['classifier']['test_acc']:.2%}."]
    base = arms["ar"]["fid"]
    rows = [(arm, difference(a["fid"], base)) for arm, a in arms.items() if arm != "ar" and a["fid"]]
    if base and rows:
        lines += ["", "FID against plain AR (mean difference ± its standard error from the seed spreads; ratio of means):",
                  "", "| arm | FID - plain AR | ratio |", "| --- | --- | --- |"]
        for arm, (diff, error) in rows:
            err = "" if math.isnan(error) else f" ± {error:.2f}"
            lines.append(f"| {NAMES[arm]} | {diff:+.2f}{err} | {np.mean(arms[arm]['fid']) / np.mean(base):.3f} |")
    lines += ["", f"FID against training steps ({config.curve_samples} samples at CFG {config.train.sample.cfg_scale:g}, "
              "against the test images; mean over the finished seeds):", "",
              "| arm | " + " | ".join(f"step {s}" for s in arms["ar"]["curve"]["steps"]) + " |",
              "| --- |" + " --- |" * len(arms["ar"]["curve"]["steps"])]
    for arm, a in arms.items():
        cells = [spread([v for v in row if v is not None]) for row in a["curve"]["fid"]]
        lines.append(f"| {NAMES[arm]} | " + " | ".join(cells) + " |")
    lines += ["", f"CFG selection: FID of {config.val_samples} samples of each arm's first run against the "
              f"{config.val_per_class * 10} validation images (held out from the training images; never the test split):",
              "", "| arm | " + " | ".join(f"CFG {g:g}" for g in config.cfg_grid) + " | chosen |",
              "| --- |" + " --- |" * (len(config.cfg_grid) + 1)]
    for arm, a in arms.items():
        grid = a["cfg_grid_validation_fid"]
        cells = [f"{grid[f'{g:g}']:.2f}" if f"{g:g}" in grid else "-" for g in config.cfg_grid]
        lines.append(f"| {NAMES[arm]} | " + " | ".join(cells) + f" | {a['cfg_scale'] if a['cfg_scale'] is not None else '-'} |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ pictures
def plot_curves(summary: dict, floor: float | None, path: Path) -> None:
    """FID against training steps, one line per arm (mean), the seed range shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for arm, a in summary["arms"].items():
        rows = [[v for v in row if v is not None] for row in a["curve"]["fid"]]
        points = [(s, row) for s, row in zip(a["curve"]["steps"], rows) if row]
        if not points:
            continue
        steps = [s for s, _ in points]
        ax.plot(steps, [np.mean(r) for _, r in points], "o-", color=COLORS[arm],
                label=f"{NAMES[arm]} ({max(len(r) for _, r in points)} seeds)")
        ax.fill_between(steps, [min(r) for _, r in points], [max(r) for _, r in points], color=COLORS[arm], alpha=0.2)
    if floor is not None:
        ax.axhline(floor, color="gray", linestyle="--", label="noise floor (real vs real)")
    ax.set(xlabel="optimizer step", ylabel="FID (domain classifier, vs test)", title="FID against training steps")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_training(runs: Path, path: Path) -> None:
    """Training cross-entropy of every run (one colour per arm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for log in sorted(runs.glob("*/log.jsonl")):
        arm = log.parent.name.rsplit("-", 1)[0]
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        ax.plot([r["step"] for r in records], [r["ce"] for r in records], color=COLORS.get(arm, "black"),
                alpha=0.7, linewidth=1, label=NAMES.get(arm, arm) if log.parent.name.endswith("-0") else None)
    ax.set(xlabel="optimizer step", ylabel="training cross-entropy (noisy context where on)",
           title="training curves, every run")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write(config: StudyConfig, ledger, out: Path) -> None:
    """table.md and the plots in the results folder."""
    results = Path(config.results)
    results.mkdir(parents=True, exist_ok=True)
    summary = summarize(ledger.units, config)
    commits = sorted({u["commit"] for u in ledger.units.values()}) or ["-"]
    (results / "table.md").write_text(table(summary, config, ledger.cpu_hours(), ", ".join(commits)))
    plot_curves(summary, summary.get("noise_floor_fid"), results / "fid_vs_steps.png")
    if (out / "runs").is_dir():
        plot_training(out / "runs", results / "training_curves.png")
