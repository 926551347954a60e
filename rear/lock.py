"""One process per output: a lock beside the folder a command writes, so a second run on the same
output stops at once and names the first, instead of racing it (two trainers on one checkpoint, two
studies on one ledger, two samplers on one folder).

The lock is an flock on `.<name>.lock` next to the folder (the folder itself stays the command's own);
the kernel drops it when its process ends however it ends, so a killed run never leaves it held.
"""
from __future__ import annotations

import contextlib
import fcntl
import functools
import inspect
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rear.distributed import launched_rank


class Locked(OSError):
    """Another live process holds the output."""


def lock_path(folder: str | Path) -> Path:
    folder = Path(folder).resolve()
    return folder.parent / f".{folder.name}.lock"


@contextlib.contextmanager
def hold(folder: str | Path) -> Iterator[None]:
    """Hold the output `folder` for the duration; raise Locked naming the holder if another process has it."""
    path = lock_path(folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            try:
                holder = json.loads(handle.read() or "{}")
            except json.JSONDecodeError:
                holder = {}
            who = (f"process {holder.get('pid', '?')} on {holder.get('host', '?')} ({holder.get('command', '?')}, "
                   f"since {holder.get('since', '?')})")
            raise Locked(f"{folder} is in use by {who}; wait for it to finish or stop it first") from None
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "command": " ".join(["rear", *sys.argv[1:]])[:200],
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}))
        handle.flush()
        yield
    finally:
        handle.close()  # closing the file releases the lock


def locked(where: Callable[..., str | Path]) -> Callable:
    """Decorator: hold the output `where(**arguments)` names while the function runs. Under torchrun only
    rank 0 holds it (the other ranks write into the same run by design)."""

    def decorate(function: Callable) -> Callable:
        signature = inspect.signature(function)

        @functools.wraps(function)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if launched_rank() != 0:
                return function(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            with hold(where(**bound.arguments)):
                return function(*args, **kwargs)

        return wrapper

    return decorate
