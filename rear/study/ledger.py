"""results.json: the study config, and one record per finished unit, rewritten atomically.

A unit is recorded the moment it finishes, with its wall seconds, torch threads, and the commit it
ran on, so a study stopped at any moment loses at most the unit in progress, and a re-run skips every
recorded unit. The summary the report derives from the records is written beside them.
"""
from __future__ import annotations

import json
import time
from enum import Enum
from pathlib import Path
from typing import Any, Callable

import torch
from omegaconf.errors import OmegaConfBaseException

from rear.config import merge, to_dict
from rear.provenance import git_commit
from rear.weights import replace_file

RESULTS = "results.json"
# settings that change where and how fast a study runs, never what it measures; and the number of
# runs per arm, which adds (or leaves unrun) units without changing any recorded one
UNCOMPARED = ("out", "results", "data_dir", "threads", "seeds")


class Ledger:
    """The records of finished units in `folder/results.json`; refuses a file of another study config."""

    def __init__(self, folder: str | Path, config: Any) -> None:
        self.path = Path(folder) / RESULTS
        self.commit = git_commit()
        self.config = as_json(to_dict(config))
        self.units: dict[str, dict] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError) as error:
                raise ValueError(f"{self.path} is not JSON ({error}); restore it (git checkout) or set results=... and "
                                 "out=... to start a new study") from None
            units = data.get("units") if isinstance(data, dict) else None
            if not (isinstance(data, dict) and isinstance(data.get("config"), dict) and isinstance(units, dict)
                    and all(isinstance(u, dict) for u in units.values())):
                raise ValueError(f"{self.path} is not a study ledger (it needs a config object and units, one object "
                                 "per unit); restore it (git checkout) or set results=... and out=... for a new study")
            try:  # settings added since the file was written take their defaults
                stored = as_json(to_dict(merge(type(config), data["config"])))
            except (KeyError, ValueError, OmegaConfBaseException) as error:
                raise ValueError(f"{self.path} holds a config this version cannot read ({error}); "
                                 "set results=... and out=... to start a new study") from None
            changed = sorted(k for k in set(stored) | set(self.config)
                             if k not in UNCOMPARED and stored.get(k) != self.config.get(k))
            if changed:
                raise ValueError(f"{self.path} holds a study of another config (differs in {', '.join(changed)}); "
                                 "restore that config or set results=... and out=... to start a new study")
            self.units = data["units"]

    def done(self, key: str) -> bool:
        return key in self.units

    def __getitem__(self, key: str) -> dict:
        return self.units[key]

    def record(self, key: str, result: dict, seconds: float, summarize: Callable[[dict], dict]) -> None:
        """Add a finished unit and rewrite the file (the summary of every unit, this one included, then
        the raw records)."""
        self.units[key] = {**result, "seconds": round(seconds, 2), "threads": torch.get_num_threads(),
                           "commit": self.commit, "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        self.write(summarize(self.units))

    def write(self, summary: dict) -> None:
        commits = sorted({u["commit"] for u in self.units.values()})
        data = {**summary, "config": self.config, "commit": commits[-1] if len(commits) == 1 else commits,
                "cpu_hours": self.cpu_hours(), "units": self.units}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        replace_file(self.path, json.dumps(data, indent=1, default=_plain))

    def cpu_hours(self) -> float:
        """Sum over finished units of wall time x threads."""
        return round(sum(u["seconds"] * u["threads"] for u in self.units.values()) / 3600, 3)


def as_json(value: Any) -> Any:
    """`value` as JSON reads it back (enums by value, tuples as lists)."""
    return json.loads(json.dumps(value, default=_plain))


def _plain(value: Any) -> Any:
    """JSON for numpy scalars and enums."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
