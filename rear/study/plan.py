"""What a study measures, as pure functions of its config and the records so far: the steps each run
is evaluated at, the order of the runs, the CFG grids (validation, its extension, matched guidance)
and the chosen CFG. The pipeline (what runs) and the report (what is shown) both read them here.
"""
from __future__ import annotations

from rear.config import StudyConfig

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
