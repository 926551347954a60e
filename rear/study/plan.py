"""What a study measures, as pure functions of its config and the records so far: the split, the steps each run
is evaluated at, the order of the runs, the CFG grids (validation, its extension, matched guidance)
and the chosen CFG, the units and their time estimate. The pipeline (what runs) and the report (what
is shown) both read them here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from rear.config import StudyConfig
from rear.study.ledger import Ledger

MAIN, ABLATIONS = ("ar", "rear"), ("noisy", "embed")


def eval_steps(config: StudyConfig) -> list[int]:
    """The optimizer steps at which every run is evaluated."""
    steps = sorted({max(1, round(f * config.train.steps)) for f in config.eval_fractions})
    if not config.eval_fractions or steps[-1] != config.train.steps or any(not 0 < f <= 1 for f in config.eval_fractions):
        raise ValueError(f"eval_fractions {config.eval_fractions} must lie in (0, 1] and end with 1.0")
    return steps


def chosen_cfg(units: dict[str, dict], arm: str, grid: list[float]) -> float:
    """The grid value with the lowest validation FID (ties: the smaller scale)."""
    return min(grid, key=lambda g: (units[f"{arm}/cfg_{g:g}"]["fid"], g))


def validation_grid(units: dict[str, dict], arm: str, config: StudyConfig) -> list[float]:
    """The CFG values the arm is scored at on validation: the grid, then each extension value while
    every value so far is scored and the lowest FID sits at the largest."""
    grid = list(config.cfg_grid)
    for extra in config.cfg_grid_extension:
        if not all(f"{arm}/cfg_{g:g}" in units for g in grid):
            break
        if chosen_cfg(units, arm, grid) != max(grid):
            break
        grid.append(extra)
    return grid


def matched_grid(units: dict[str, dict], config: StudyConfig) -> list[float]:
    """Every CFG any arm was (or is about to be) scored at on validation: the matched-guidance grid."""
    arms = [arm for arm, runs in config.seeds.items() if runs]
    return sorted({g for arm in arms for g in validation_grid(units, arm, config)})


def run_order(config: StudyConfig) -> list[tuple[str, int]]:
    """(arm, k) of every run: plain AR and reAR seed-major, then the ablations seed-major."""
    order = []
    for arms in (MAIN, ABLATIONS):
        order += [(arm, k) for k in range(max(config.seeds[a] for a in arms)) for arm in arms if k < config.seeds[arm]]
    return order


def split_indices(labels: np.ndarray, config: StudyConfig) -> dict[str, np.ndarray]:
    """Disjoint sorted indices of Fashion-MNIST train per part, drawn per class by `split_seed`."""
    rng = np.random.default_rng(config.split_seed)
    a = config.val_per_class
    b = a + config.floor_per_class
    parts: dict[str, list[np.ndarray]] = {"validation": [], "floor": [], "train": []}
    for c in range(int(labels.max()) + 1):
        items = rng.permutation(np.flatnonzero(labels == c))
        if len(items) < b + max(config.train_per_class, 1):
            raise ValueError(f"class {c} has {len(items)} training images; val_per_class + floor_per_class + "
                             f"train_per_class = {b + config.train_per_class} do not fit")
        parts["validation"].append(items[:a])
        parts["floor"].append(items[a:b])
        parts["train"].append(items[b : b + config.train_per_class] if config.train_per_class else items[b:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


@dataclass
class Unit:
    key: str
    run: Callable[[], dict]
    # for the ETA: (what, amount) with what = "train:<arm>" (steps), "sample" (images) or "fixed" (seconds)
    work: list[tuple[str, float]]


def estimate(units: list[Unit], ledger: Ledger) -> float:
    """Seconds the units not yet recorded should take, at the rates measured so far."""
    trained: dict[str, tuple[float, int]] = {}  # arm -> (seconds, steps)
    for key, record in ledger.units.items():
        if record.get("train_steps"):
            seconds, steps = trained.get(key.split("/")[0], (0.0, 0))
            trained[key.split("/")[0]] = (seconds + record["train_seconds"], steps + record["train_steps"])
    pooled = tuple(map(sum, zip(*trained.values()))) or (1.0, 1)  # 1 s a step until one is measured
    sampled = [(r["sample_seconds"], r["num_samples"]) for r in ledger.units.values() if "sample_seconds" in r]
    per_sample = sum(s for s, _ in sampled) / sum(n for _, n in sampled) if sampled else 0.02

    def rate(what: str) -> float:
        if what.startswith("train:"):
            seconds, steps = trained.get(what[len("train:"):], pooled)
            return seconds / steps
        return per_sample if what == "sample" else 1.0

    return sum(amount * rate(what) for unit in units if not ledger.done(unit.key) for what, amount in unit.work)


def clock(seconds: float) -> str:
    """h:mm"""
    minutes = round(seconds / 60)
    return f"{minutes // 60}:{minutes % 60:02d}"
