"""Shared fixtures: every test draws fresh random inputs from a logged seed."""

from __future__ import annotations

import os

import pytest
import torch


@pytest.fixture(autouse=True)
def fresh_seed(request):
    """Seed torch from the OS for each test and print the seed (shown when the test fails).

    Re-run one failure exactly with ``QTF_TEST_SEED=<seed> pytest ...``.
    """
    seed = int(os.environ.get("QTF_TEST_SEED", int.from_bytes(os.urandom(4), "little")))
    torch.manual_seed(seed)
    print(f"[seed] {request.node.nodeid}: QTF_TEST_SEED={seed}")
    return seed
