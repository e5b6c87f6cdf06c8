"""Measured latency: median wall time of eval forwards (a measurement, not an estimate)."""

from __future__ import annotations

import statistics
import time

import torch

__all__ = ["measure_latency", "measure_latency_ms"]


@torch.no_grad()
def measure_latency_ms(model, seq_len: int, device, repeats: int = 5) -> tuple[float, float]:
    """Median wall time (ms) of one eval forward on a single sequence of ``seq_len`` random
    tokens, and the FLOPs per token the model counted for it."""
    was = model.training
    model.eval()
    ids = torch.randint(0, model.config.vocab_size, (1, seq_len), device=device)
    try:
        model(ids)  # warm-up (and the eval weight caches)
        times = []
        for _ in range(repeats):
            if torch.cuda.is_available() and torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            _, _, stats = model(ids)
            if torch.cuda.is_available() and torch.device(device).type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
    finally:
        model.train(was)
    return statistics.median(times) * 1e3, stats.total_flops / seq_len


def measure_latency(
    model: torch.nn.Module,
    seq_len: int = 128,
    device: str | torch.device | None = None,
    repeats: int = 5,
) -> float:
    """Measured median wall time (ms) of one eval forward on one sequence of ``seq_len``
    random tokens on ``device`` (default: where the model is), after a warm-up."""
    if device is None:
        device = next(model.parameters()).device
    return measure_latency_ms(model.to(device), seq_len, device, repeats)[0]
