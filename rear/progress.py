"""Progress bars that suit where they are written: live on a terminal, sparse in a file or pipe."""
from __future__ import annotations

import sys
from typing import Any

from tqdm import tqdm

QUIET_INTERVAL = 60.0  # seconds between updates when stderr is a file or a pipe


def bar(iterable: Any = None, *, enabled: bool = True, **kwargs: Any) -> tqdm:
    """tqdm on stderr: refreshed live on a terminal; elsewhere (logs of background runs) at most once
    a minute, in ASCII, so a log holds a readable handful of updates instead of thousands."""
    live = sys.stderr.isatty()
    return tqdm(iterable, disable=not enabled, mininterval=0.1 if live else QUIET_INTERVAL,
                ascii=None if live else True, **kwargs)
