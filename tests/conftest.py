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


@pytest.fixture()
def one_thread():
    """Tiny linear algebra in loops: one thread avoids OpenMP spin-waits on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def no_gguf_cache(monkeypatch):
    """Tests never write converted GGUF models into the user's cache (the cache's own tests
    point QTF_CACHE_DIR at a temporary folder)."""
    monkeypatch.setenv("QTF_CACHE_DIR", "off")
