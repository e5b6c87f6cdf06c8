"""``qtf generate``: continue a prompt with a saved model."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from ._common import (
    CheckpointArg,
    SeedOpt,
    console,
    fail,
    is_causal_lm_spec,
    resolve_checkpoint,
    tokenizer_dir,
    user_errors,
)


def unknown_words(tok, prompt: str) -> list[str]:
    """The prompt's words that the tokenizer maps to its ``<unk>`` id, each once."""
    unk = getattr(tok, "unk_id", None)
    if unk is None:
        return []
    seen: list[str] = []
    for word in prompt.split():
        if unk in tok.encode(word) and word not in seen:
            seen.append(word)
    return seen


def generate(
    checkpoint: CheckpointArg,
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "the",
    max_new_tokens: Annotated[int, typer.Option(help="Tokens to write.")] = 30,
    temperature: Annotated[float, typer.Option(help="Sampling temperature (0: greedy).")] = 0.8,
    top_k: Annotated[int | None, typer.Option(help="Sample among the k most likely tokens.")] = 40,
    seed: SeedOpt = 0,
) -> None:
    """Continue a prompt with a saved model (also a compressed folder, a Hugging Face folder,
    a .gguf file or smollm2)."""
    if is_causal_lm_spec(checkpoint):
        _generate_causal_lm(checkpoint, prompt, max_new_tokens, temperature, top_k, seed)
        return
    import torch

    from ..data import load_tokenizer
    from ..model import QTensorFormer

    ckpt = resolve_checkpoint(checkpoint)
    with user_errors():
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(tokenizer_dir(ckpt))
    ids = tok.encode(prompt) or [tok.eos_id]
    unknown = unknown_words(tok, prompt)
    if unknown:
        console.print(
            f"[yellow]warning:[/] not in the model's vocabulary, read as <unk>: "
            f"{escape(', '.join(unknown))}"
        )
    gen = torch.Generator().manual_seed(seed)
    with user_errors():
        out = model.generate(torch.tensor([ids]), max_new_tokens, temperature, top_k, gen)
    console.print(f"[bold]{prompt}[/] {tok.decode(out[0, len(ids) :].tolist())}")


def _generate_causal_lm(
    spec: str, prompt: str, max_new_tokens: int, temperature: float, top_k: int | None, seed: int
) -> None:
    from ..compress import continue_text, load_causal_lm

    with user_errors(ImportError):
        loaded = load_causal_lm(spec)
        if loaded.tokenizer is None:
            fail(f"{loaded.source} has no tokenizer saved with it: generation needs one")
        text = continue_text(
            loaded.model,
            loaded.tokenizer,
            prompt,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            seed=seed,
        )
    console.print(f"[bold]{escape(prompt)}[/]{escape(text)}")
