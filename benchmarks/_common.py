"""Shared helpers for the benchmark scripts: timing, allocator settings, machine facts,
and writing a table into docs/RESULTS.md between markers."""

from __future__ import annotations

import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

#: glibc malloc settings that avoid page faults on fresh allocations on the 2-core VMs
#: (see DESIGN notes). Both sides of every comparison run under the same settings.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": "4294967296",
    "MALLOC_TRIM_THRESHOLD_": "17179869184",
    "MALLOC_TOP_PAD_": "536870912",
}

RESULTS = Path(__file__).resolve().parent.parent / "docs" / "RESULTS.md"


def ensure_malloc_env(enabled: bool) -> str:
    """Re-exec the script with :data:`MALLOC_ENV` set (once); returns a label for the table."""
    if not enabled:
        return "glibc defaults"
    if any(os.environ.get(k) != v for k, v in MALLOC_ENV.items()):
        env = {**os.environ, **MALLOC_ENV}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    return " ".join(f"{k}={v}" for k, v in MALLOC_ENV.items())


def median_ms(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def interleaved_medians_ms(fns: dict, repeats: int, warmup: int = 2, seed: int = 0) -> dict:
    """Median ms of each callable, timed in rounds (each callable once per round, in a fresh
    seeded random order) so that drift on a noisy machine, and whatever a call leaves in the
    caches for the next one, affect every side alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    order = list(fns)
    rng = random.Random(seed)
    for _ in range(repeats):
        rng.shuffle(order)
        for k in order:
            t = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) * 1e3 for k, v in times.items()}


def gemm_gflops(n: int = 2048, repeats: int = 10) -> float:
    """Best measured float32 GEMM rate of this machine (n×n×n), in GFLOP/s.

    The fastest of ``repeats`` runs: the floor it defines should be the attainable rate, not
    the rate on a run slowed by a noisy neighbour.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(2):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    # The kernels torch dispatches to (AVX2, AVX512): the same model name covers both kinds.
    cpu = f"{cpu} ({torch.backends.cpu.get_cpu_capability()})"
    return (
        f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), Python {platform.python_version()}"
    )


def results_path() -> Path:
    """docs/RESULTS.md, or the file ``$QTF_RESULTS`` names (``run_all.py --quick`` writes its
    tables there)."""
    return Path(os.environ.get("QTF_RESULTS") or RESULTS)


def write_section(
    name: str, body: str, path: Path | None = None, before: str | None = None
) -> None:
    """Replace the text between ``<!-- name:start -->`` and ``<!-- name:end -->`` in ``path``
    (default :func:`results_path`). A missing section is inserted just before section
    ``before`` when that one exists, else appended."""
    path = path if path is not None else results_path()
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else "# Results\n"
    block = f"{start}\n{body.rstrip()}\n{end}"
    anchor = f"<!-- {before}:start -->" if before else None
    if start in text and end in text:
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = head + block + tail
    elif anchor and anchor in text:
        head, tail = text.split(anchor, 1)
        text = head + block + "\n\n" + anchor + tail
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
