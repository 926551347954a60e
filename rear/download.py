"""Downloads that never hang and never leave a half-written or unverified file behind."""
from __future__ import annotations

import hashlib
import os
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

TIMEOUT = 60  # seconds without a byte before a stalled download gives up
DEADLINE = 1800  # seconds for a whole download: a server dripping bytes does not keep it going forever
MAX_BYTES = 1 << 30  # the largest file rear downloads is about 100 MB


def fetch(urls: list[str], target: Path, check: Callable[[Path], str | None], timeout: float = TIMEOUT,
          deadline: float = DEADLINE, max_bytes: int = MAX_BYTES) -> Path:
    """Download the first of `urls` that answers into `target` via `target.partial`; `check(path)`
    returns a complaint (the file is wrong) or None. A download that stalls `timeout` seconds, runs past
    `deadline` seconds or grows past `max_bytes` is abandoned. Raises OSError naming every URL tried."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    failures = []
    for url in urls:
        try:
            began, size = time.monotonic(), 0
            with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as out:
                while chunk := response.read1(1 << 20):
                    size += len(chunk)
                    if size > max_bytes:
                        raise OSError(f"larger than {max_bytes:,} bytes: not the expected file")
                    if time.monotonic() - began > deadline:
                        raise OSError(f"still unfinished after {deadline:g} s ({size:,} bytes): too slow")
                    out.write(chunk)
            complaint = check(partial)
            if complaint is None:
                os.replace(partial, target)
                return target
            failures.append(f"{url}: {complaint}")
        except OSError as error:  # URLError, HTTP errors, timeouts, refused connections
            failures.append(f"{url}: {' '.join(str(error).split())}")
        finally:
            partial.unlink(missing_ok=True)
    raise OSError(f"could not download {target.name} ({'; '.join(failures)})")


def sha256(path: Path, opener: Callable = open) -> str:
    """Hex SHA-256 of a file's bytes (`opener=gzip.open`: of its decompressed bytes)."""
    digest = hashlib.sha256()
    with opener(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
