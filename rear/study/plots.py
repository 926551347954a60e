"""A study's plots: FID against steps, FID against CFG with the guidance frontier, the training curves."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rear.study.summary import COLORS, NAMES
from rear.study.tables import any_matched


def _axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, *plt.subplots(figsize=(6, 4))


def _save(plt, fig, ax, path: Path) -> None:
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_curves(summary: dict, floor: float | None, path: Path) -> None:
    """FID against training steps, one line per arm (mean), the seed range shaded."""
    plt, fig, ax = _axes()
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
    _save(plt, fig, ax, path)


def plot_guidance(summary: dict, folder: Path) -> None:
    """fid_vs_cfg.png (test FID against CFG per arm, seed range shaded) and pr_frontier.png (precision
    against recall as CFG grows: the guidance frontier); nothing before a matched point is scored."""
    if not any_matched(summary):
        return
    arms = {arm: a for arm, a in summary["arms"].items() if any(p["fid"] for p in a["matched_cfg"].values())}
    plt, fig, ax = _axes()
    for arm, a in arms.items():
        points = [(float(g), p["fid"]) for g, p in a["matched_cfg"].items() if p["fid"]]
        ax.plot([g for g, _ in points], [np.mean(v) for _, v in points], "o-", color=COLORS[arm],
                label=f"{NAMES[arm]} ({max(len(v) for _, v in points)} seeds)")
        ax.fill_between([g for g, _ in points], [min(v) for _, v in points], [max(v) for _, v in points],
                        color=COLORS[arm], alpha=0.2)
        if a["cfg_scale"] is not None:
            ax.axvline(a["cfg_scale"], color=COLORS[arm], linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set(xlabel="CFG scale (dotted: the arm's chosen CFG)", ylabel="FID (vs test)", title="FID against guidance")
    _save(plt, fig, ax, folder / "fid_vs_cfg.png")
    plt, fig, ax = _axes()
    for arm, a in arms.items():
        points = [(g, p) for g, p in a["matched_cfg"].items() if p["precision"] and p["recall"]]
        recall, precision = [np.mean(p["recall"]) for _, p in points], [np.mean(p["precision"]) for _, p in points]
        ax.plot(recall, precision, "o-", color=COLORS[arm], label=NAMES[arm])
        for (g, _), x, y in zip(points, recall, precision):
            ax.annotate(g, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points", color=COLORS[arm])
    ax.set(xlabel="recall", ylabel="precision", title="guidance frontier (labels: CFG; mean over seeds)")
    _save(plt, fig, ax, folder / "pr_frontier.png")


def plot_training(runs: Path, path: Path) -> None:
    """Training cross-entropy of every run (one colour per arm)."""
    plt, fig, ax = _axes()
    for log in sorted(runs.glob("*/log.jsonl")):
        arm = log.parent.name.rsplit("-", 1)[0]
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
        ax.plot([r["step"] for r in records], [r["ce"] for r in records], color=COLORS.get(arm, "black"),
                alpha=0.7, linewidth=1, label=NAMES.get(arm, arm) if log.parent.name.endswith("-0") else None)
    ax.set(xlabel="optimizer step", ylabel="training cross-entropy (noisy context where on)",
           title="training curves, every run")
    _save(plt, fig, ax, path)
