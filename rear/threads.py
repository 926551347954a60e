"""How many torch CPU threads a command computes with: one policy for every command, printed at start.

torch's default (every core) beside another busy process oversubscribes a small machine badly (on
2 cores, several times slower than one thread). So: `--threads N`
when given, else a config's own nonzero `threads`, else the cores this process may use that the
1-minute load average does not already claim, shared among the local ranks of torchrun.
"""
from __future__ import annotations

import os

import torch

from rear.distributed import launched_rank


def default_threads() -> tuple[int, str]:
    """(threads, why): the free cores (available minus the recent load), divided among local ranks."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    free = max(1, cores - round(load))
    why = f"{cores} cores, load {load:.1f}" + (f", {ranks} local ranks" if ranks > 1 else "")
    return max(1, free // ranks), why


def use(command: str, requested: int | None, configured: int = 0) -> int:
    """Set torch's CPU threads for this process by the policy above and say so (rank 0 under torchrun);
    returns the count."""
    if requested is not None and requested < 1:
        raise ValueError(f"--threads must be at least 1, got {requested}")
    if requested:
        count, origin = requested, "--threads"
    elif configured:
        count, origin = configured, "the config's threads"
    else:
        count, why = default_threads()
        origin = f"default: {why}"
    torch.set_num_threads(count)
    if launched_rank() == 0:
        print(f"rear {command}: {count} CPU thread{'s' if count > 1 else ''} ({origin}; --threads N to choose)")
    return count
