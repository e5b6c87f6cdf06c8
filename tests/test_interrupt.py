"""Ctrl-C in a real training process: it finishes the step, writes a checkpoint, says how
to resume, exits 130; resuming reproduces the uninterrupted run exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qtensorformer.files import RunDir
from qtensorformer.io import load_state

ARGS = ["--data", "synthetic", "--batch-size", "4", "--seq-len", "32", "--max-steps", "300"]
ARGS += ["--eval-every", "1000", "--warmup", "10", "--device", "cpu", "--seed", "3"]
ARGS += ["--set", "d_model=32", "--set", "n_heads=2", "--set", "n_layers=1"]


def _train(out: Path, *extra: str, **popen) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "qtensorformer.cli", "train", *ARGS, "--out", str(out), *extra]
    return subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **popen
    )


def _wait_for_training(run: RunDir, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until the run has logged a training record (it is mid-run, past its set-up)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            pytest.fail(f"training ended before it could be interrupted:\n{proc.stdout.read()}")
        if run.metrics.is_file() and any(
            json.loads(line)["event"] == "train" for line in run.metrics.read_text().splitlines()
        ):
            return
        time.sleep(0.05)
    pytest.fail("no training record within the timeout")


def _final_weights(run: RunDir) -> dict:
    return load_state(run.newest_checkpoint(complete="trainer_state.pt") / "model.safetensors")


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT to a child needs POSIX")
def test_sigint_checkpoints_and_resume_matches_the_uninterrupted_run(tmp_path):
    cut = RunDir(tmp_path / "cut")
    proc = _train(cut.path)
    _wait_for_training(cut, proc)
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    said = " ".join(out.split())  # the console wraps long lines
    assert "Interrupted" in said and f"qtf train --resume --out {cut.path}" in said, out
    events = [json.loads(x) for x in cut.metrics.read_text().splitlines()]
    stopped = [e for e in events if e["event"] == "interrupted"]
    assert len(stopped) == 1 and 0 < stopped[0]["step"] < 300
    assert cut.checkpoint(stopped[0]["step"]).is_dir()

    resumed = _train(cut.path, "--resume")
    assert resumed.wait(timeout=300) == 0, resumed.stdout.read()
    straight = RunDir(tmp_path / "straight")
    whole = _train(straight.path)
    assert whole.wait(timeout=300) == 0, whole.stdout.read()

    a, b = _final_weights(straight), _final_weights(cut)
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert cut.read_summary()["valid_ppl"] == straight.read_summary()["valid_ppl"]
