"""Distributed data-parallel training (torchrun, gloo on CPU) matches one process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(tmp_path, variant):
    pytest.importorskip("torch.distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        env.pop(k, None)
    one, two = tmp_path / "one.json", tmp_path / "two.json"
    subprocess.run(
        [sys.executable, str(WORKER), str(one), str(tmp_path / "r1"), variant],
        check=True,
        env=env,
        timeout=300,
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        str(29500 + os.getpid() % 1000),
        str(WORKER),
        str(two),
        str(tmp_path / "r2"),
        variant,
    ]
    done = subprocess.run(cmd, env=env, timeout=300, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    a, b = json.loads(one.read_text()), json.loads(two.read_text())
    assert a["world"] == 1 and b["world"] == 2
    assert len(a["losses"]) == len(b["losses"]) == 5
    assert (tmp_path / "r2" / "checkpoints" / "latest").is_file()
    ranks = [json.loads(Path(f"{two}.rank{r}").read_text()) for r in (0, 1)]
    return a["losses"], b["losses"], ranks


def test_two_processes_match_one_with_the_same_global_batch(tmp_path):
    one, two, _ = _run(tmp_path, "plain")
    for x, y in zip(one, two, strict=True):
        assert abs(x - y) < 1e-4 * abs(x), (one, two)


def test_routed_model_under_two_processes(tmp_path):
    """Routing and adaptive ranks under DDP: one threshold on every process (θ starts at the
    mean of the processes' quantiles, then moves with all-reduced gradients). The losses follow
    one process closely but not exactly: each process's routing penalty and first-batch
    quantile see half the batch."""
    one, two, ranks = _run(tmp_path, "routed")
    assert ranks[0] == ranks[1] and len(ranks[0]) == 2
    for x, y in zip(one, two, strict=True):
        assert abs(x - y) < 0.005 * abs(x), (one, two)
