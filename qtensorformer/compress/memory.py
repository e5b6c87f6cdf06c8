"""Resident memory of this process: now, the peak, and a reset of the peak (Linux), so that a
step's own peak (a compression after a model load) can be told from the load's.

Example:
    >>> now = current_rss_mib()
    >>> peak_rss_mib() >= now > 0
    True
"""

from __future__ import annotations

import resource
import sys
from pathlib import Path

__all__ = ["current_rss_mib", "peak_rss_mib", "reset_peak_rss"]

_STATUS = Path("/proc/self/status")


def _status_kib(field: str) -> int | None:
    """A ``kB`` field of /proc/self/status (None where there is no such file)."""
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mib() -> float:
    """Resident memory now (MiB; the peak so far where the system does not say)."""
    kib = _status_kib("VmRSS")
    return kib / 1024 if kib is not None else peak_rss_mib()


def peak_rss_mib() -> float:
    """Peak resident memory since the process started or since :func:`reset_peak_rss`
    (MiB)."""
    kib = _status_kib("VmHWM")
    if kib is not None:
        return kib / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024


def reset_peak_rss() -> bool:
    """Reset the peak to the current resident memory (Linux ≥ 4.0: ``clear_refs`` 5);
    False where the system does not allow it (the peak then stays the process's)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True
