"""``qtf generate``: continue a prompt with a saved model."""

from __future__ import annotations

from typing import Annotated

import typer

from ._common import CheckpointArg, console, resolve_checkpoint, tokenizer_dir, user_errors


def generate(
    checkpoint: CheckpointArg,
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "the",
    max_new_tokens: int = 30,
    temperature: float = 0.8,
    top_k: int | None = 40,
    seed: int = 0,
) -> None:
    """Continue a prompt with a saved model."""
    import torch

    from ..data import load_tokenizer
    from ..model import QTensorFormer

    ckpt = resolve_checkpoint(checkpoint)
    with user_errors():
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(tokenizer_dir(ckpt))
    ids = tok.encode(prompt) or [tok.eos_id]
    gen = torch.Generator().manual_seed(seed)
    with user_errors():
        out = model.generate(torch.tensor([ids]), max_new_tokens, temperature, top_k, gen)
    console.print(f"[bold]{prompt}[/] {tok.decode(out[0, len(ids) :].tolist())}")
