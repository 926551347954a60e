"""One-line messages for what a command ends with: a system error names its path and what to do."""
from __future__ import annotations

import errno

_FULL = "free some space or write elsewhere, then run the command again (finished work is kept)"
_DENIED = "choose a location you may use, or change its permissions"
ADVICE = {  # errno -> what to do
    errno.ENOSPC: _FULL,
    errno.EDQUOT: _FULL,
    errno.EACCES: _DENIED,
    errno.EPERM: _DENIED,
    errno.EROFS: "the file system is read-only: choose another location",
    errno.EISDIR: "a file was expected there, not a folder",
    errno.ENOTDIR: "a part of that path is a file, not a folder",
    errno.ENOENT: "check the path",
    errno.EEXIST: "remove it or choose another path",
    errno.ENAMETOOLONG: "choose a shorter path",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) or lower the number of workers",
    errno.ENOMEM: "out of memory: lower the batch size or the number of workers",
}


def first_line(error: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type when the message is empty), for one-line errors."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


def one_line(error: BaseException) -> str:
    """The line `rear` prints for `error`: an OSError raised by the system ("[Errno 28] No space left on
    device") as its description, the path(s) it concerns and what to do; anything else as its first line."""
    if isinstance(error, OSError) and error.errno is not None and error.strerror:
        paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
        advice = ADVICE.get(error.errno)
        return f"{error.strerror}{f': {paths}' if paths else ''}{f'; {advice}' if advice else ''}"
    return first_line(error, limit=2000)
