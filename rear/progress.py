"""Progress bars that suit where they are written: live on a terminal, sparse in a file or pipe."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

QUIET_INTERVAL = 60.0  # seconds between updates when stderr is a file or a pipe


class QuietBar(tqdm):
    """A bar whose postfix waits for the next timed update instead of forcing one."""

    def set_postfix(self, ordered_dict: Any = None, refresh: bool = True, **kwargs: Any) -> None:
        super().set_postfix(ordered_dict, refresh=False, **kwargs)


def bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """tqdm on stderr: refreshed live on a terminal; elsewhere (logs of background runs) at most once
    a minute, in ASCII, so a log holds a readable handful of updates instead of thousands."""
    if sys.stderr.isatty():
        return tqdm(iterable, disable=not enabled, **kwargs)
    return QuietBar(iterable, disable=not enabled, mininterval=QUIET_INTERVAL, ascii=True, **kwargs)
