"""``qtf explain``: per-token audit of routing and rank decisions, in plain language."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from ._common import (
    CheckpointArg,
    console,
    fail,
    find_run,
    resolve_checkpoint,
    tokenizer_dir,
    user_errors,
)

if TYPE_CHECKING:
    from ..explain import AuditTrail


def audit_text(ckpt: Path, text: str) -> AuditTrail:
    """The audit trail of ``text`` through the model in ``ckpt`` (token ids separated by
    spaces when the model has no tokenizer), cropped to the model's context."""
    import torch

    from ..data import load_tokenizer
    from ..explain import audit
    from ..model import QTensorFormer

    model = QTensorFormer.from_pretrained(ckpt)
    tok = load_tokenizer(tokenizer_dir(ckpt)) if tokenizer_dir(ckpt).is_dir() else None
    ids = tok.encode(text) if tok is not None else [int(t) for t in text.split()]
    if not ids:
        fail("--text gives no tokens")
    return audit(model, torch.tensor(ids[: model.config.max_seq_len]), tok)


def budget_events(ckpt: Path) -> list[dict[str, Any]]:
    """The budget events logged by the run ``ckpt`` belongs to (none for a lone model)."""
    run = find_run(ckpt)
    records = run.read_metrics() if run is not None else []
    return [e for e in records if e.get("event") == "budget"]


def print_layers(trail: AuditTrail, layers: list[int] | None) -> None:
    """The decision table of each layer asked for (every layer by default)."""
    for li in layers if layers else range(trail.n_layers):
        if not 0 <= li < trail.n_layers:
            fail(f"--layer {li} out of range: the model has {trail.n_layers} layers")
        console.print(trail.table(li))


def print_explanations(
    trail: AuditTrail,
    events: list[dict[str, Any]],
    url: str | None,
    model: str,
    api_key_env: str,
    timeout: float,
) -> None:
    """Plain-language explanations: from the LLM endpoint at ``url`` when given (templates
    when it fails), else from the templates."""
    from ..explain import LLMExplainer, explain_budget, explain_trail

    if not url:
        for line in explain_trail(trail) + explain_budget(events):
            console.print(line)
        return
    with user_errors():
        ex = LLMExplainer(url, model, api_key_env, timeout)
    res = ex.explain(trail, events)
    if res.source != "llm":
        console.print(f"[yellow]explainer unavailable ({res.error}); template explanations:[/]")
    console.print(res.text)


def explain(
    checkpoint: CheckpointArg,
    text: Annotated[str, typer.Option(help="Text to run through the model.")],
    layer: Annotated[
        list[int] | None, typer.Option(help="Layer(s) to tabulate (default: all).")
    ] = None,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Write the audit trail to this JSON file.")
    ] = None,
    explainer_url: Annotated[
        str | None,
        typer.Option(help="OpenAI-compatible endpoint (e.g. http://host:8000/v1); optional."),
    ] = None,
    explainer_model: Annotated[str, typer.Option(help="Model name for the endpoint.")] = "default",
    api_key_env: Annotated[
        str, typer.Option(help="Environment variable holding the endpoint's API key.")
    ] = "QTF_EXPLAINER_API_KEY",
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the endpoint.")] = 30.0,
) -> None:
    """Per-token audit of routing and rank decisions on a text, with plain-language
    explanations (templates; an LLM endpoint when given, falling back to templates)."""
    ckpt = resolve_checkpoint(checkpoint)
    with user_errors():
        trail = audit_text(ckpt, text)
    print_layers(trail, layer)
    events = budget_events(ckpt)
    print_explanations(trail, events, explainer_url, explainer_model, api_key_env, timeout)
    if json_out:
        trail.save(json_out)
        console.print(f"wrote {json_out}")
