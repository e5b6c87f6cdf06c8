"""``qtf generate``: continue a prompt with a saved model."""

from __future__ import annotations

import time
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
    top_p: Annotated[
        float, typer.Option(help="Sample among the most likely tokens holding this mass (1: off).")
    ] = 1.0,
    repetition_penalty: Annotated[
        float, typer.Option(help="Penalise tokens already written (>1 discourages; 1: off).")
    ] = 1.0,
    cache: Annotated[
        bool, typer.Option(help="Key/value cache: each step runs only the new token.")
    ] = True,
    seed: SeedOpt = 0,
) -> None:
    """Continue a prompt with a saved model (also a compressed folder, a Hugging Face folder,
    a .gguf file or smollm2)."""
    from ..generation import SamplingConfig

    with user_errors():
        sampling = SamplingConfig(temperature, top_k, top_p, repetition_penalty)
    t0 = time.perf_counter()
    if is_causal_lm_spec(checkpoint):
        text = _continue_causal_lm(checkpoint, prompt, max_new_tokens, sampling, seed, cache)
    else:
        text = _continue_qtensorformer(checkpoint, prompt, max_new_tokens, sampling, seed, cache)
    seconds = time.perf_counter() - t0
    console.print(f"[bold]{escape(prompt)}[/]{escape(text)}")
    console.print(
        f"[dim]{max_new_tokens} tokens in {seconds:.1f} s "
        f"(model load included; key/value cache {'on' if cache else 'off'})[/]"
    )


def _continue_qtensorformer(
    checkpoint: str, prompt: str, max_new_tokens: int, sampling, seed: int, cache: bool
) -> str:
    """The continuation of ``prompt`` by a checkpoint of this library, warning about words
    outside its vocabulary."""
    from ..compress import continue_text
    from ..data import load_tokenizer
    from ..model import QTensorFormer

    ckpt = resolve_checkpoint(checkpoint)
    with user_errors():
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(tokenizer_dir(ckpt))
    unknown = unknown_words(tok, prompt)
    if unknown:
        console.print(
            f"[yellow]warning:[/] not in the model's vocabulary, read as <unk>: "
            f"{escape(', '.join(unknown))}"
        )
    with user_errors():
        text = continue_text(
            model,
            tok,
            prompt,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            seed=seed,
            use_cache=cache,
        )
    return " " + text


def _continue_causal_lm(
    spec: str, prompt: str, max_new_tokens: int, sampling, seed: int, cache: bool
) -> str:
    from ..compress import continue_text, load_causal_lm

    with user_errors(ImportError):
        loaded = load_causal_lm(spec)
        if loaded.tokenizer is None:
            fail(f"{loaded.source} has no tokenizer saved with it: generation needs one")
        return continue_text(
            loaded.model,
            loaded.tokenizer,
            prompt,
            max_new_tokens=max_new_tokens,
            sampling=sampling,
            seed=seed,
            use_cache=cache,
        )
