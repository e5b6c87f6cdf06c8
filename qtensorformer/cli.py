"""The ``qtf`` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ._version import __version__

app = typer.Typer(
    name="qtf",
    help="Q-TensorFormer: tensor-network language models with simulated quantum-circuit features.",
    no_args_is_help=True,
    add_completion=False,
)
# Wide tables even when the output is a pipe or a file (rich defaults to 80 columns there).
console = Console(width=None if sys.stdout.isatty() else 120)


def _version_callback(value: bool) -> None:
    if value:
        console.print(f"qtensorformer {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version_callback,
        is_eager=True,
        help="Print the version and exit.",
    ),
) -> None:
    """Q-TensorFormer command line."""


@app.command()
def info() -> None:
    """Print versions, threads and devices."""
    import torch

    t = Table(title="qtensorformer environment")
    t.add_column("item")
    t.add_column("value")
    t.add_row("qtensorformer", __version__)
    t.add_row("torch", torch.__version__)
    t.add_row("torch threads", str(torch.get_num_threads()))
    t.add_row("CUDA", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")
    try:
        import pennylane

        t.add_row("pennylane", pennylane.__version__)
    except ImportError:
        t.add_row("pennylane", "not installed (pip install 'qtensorformer[pennylane]')")
    console.print(t)


def _train_config(**kw):
    from .train import TrainConfig

    return TrainConfig(**{k: v for k, v in kw.items() if v is not None})


def _fail(msg: str) -> None:
    console.print(f"[bold red]error:[/] {msg}")
    raise typer.Exit(2)


DataOpt = Annotated[
    str, typer.Option("--data", help="Corpus: wikitext-2, wikitext-2-raw or synthetic.")
]
DataDirOpt = Annotated[
    str | None,
    typer.Option(
        "--data-dir",
        help="Folder holding <data>/train.txt etc. (else $QTF_DATA_DIR, ./data, ../shared/data).",
    ),
]
TokOpt = Annotated[
    str,
    typer.Option(help="Tokenizer: word (full vocabulary), word:K (top K), bpe:N, hf:PATH."),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", help="ModelConfig override KEY=VALUE (repeatable), e.g. tt_rank=4."),
]


@app.command()
def train(
    preset: Annotated[str, typer.Option(help="Model size: small, medium, large, xl.")] = "small",
    variant: Annotated[
        str, typer.Option(help="Pillars: dense, tt, default (TT + quantum encoder), all.")
    ] = "default",
    dense: Annotated[bool, typer.Option("--dense", help="Same as --variant dense.")] = False,
    data: DataOpt = "wikitext-2",
    data_dir: DataDirOpt = None,
    tokenizer: TokOpt = "word",
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    warmup: int = 100,
    max_steps: int | None = None,
    max_tokens: int | None = None,
    epochs: float = 1.0,
    max_minutes: float | None = None,
    eval_every: int = 500,
    eval_max_tokens: int | None = 100_000,
    patience: int | None = None,
    max_latency_ms: Annotated[
        float | None,
        typer.Option(help="Latency budget per query (measured at each evaluation)."),
    ] = None,
    max_energy_uj: Annotated[
        float | None,
        typer.Option(help="Energy budget per query, µJ (estimated on --energy-hardware)."),
    ] = None,
    energy_hardware: Annotated[
        str, typer.Option(help="Hardware profile of the logged energy estimates.")
    ] = "cpu_xeon",
    seed: int = 0,
    set_: SetOpt = None,
    out: Annotated[
        str | None, typer.Option(help="Run folder (default runs/<preset>-<variant>-<data>).")
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Continue the run in --out from its latest checkpoint.")
    ] = False,
    device: str = "auto",
) -> None:
    """Train a model on a corpus and report validation and test perplexity."""
    from .data import load_tokenizer
    from .train import latest_checkpoint
    from .train.run import model_config, overrides_from_pairs, prepare_data, train_one

    variant = "dense" if dense else variant
    run_dir = Path(out or f"runs/{preset}-{variant}-{data}")
    try:
        if resume:
            info_path = run_dir / "run.json"
            ckpt = latest_checkpoint(run_dir)
            if not info_path.is_file() or ckpt is None:
                _fail(f"nothing to resume in {run_dir} (no run.json or no checkpoint)")
            info = json.loads(info_path.read_text())
            from .config import ModelConfig

            cfg = ModelConfig.from_dict(info["model_config"])
            tcfg = _train_config(**info["train_config"])
            prepared = prepare_data(info["data"], data_dir, load_tokenizer(ckpt / "tokenizer"))
            console.print(f"Resuming {run_dir} (its saved configs; other options are ignored)")
        else:
            prepared = prepare_data(data, data_dir, tokenizer)
            overrides = overrides_from_pairs(set_ or [])
            overrides.setdefault("max_seq_len", max(seq_len, 32))
            cfg = model_config(variant, preset, prepared.tokenizer.vocab_size, **overrides)
            tcfg = _train_config(
                batch_size=batch_size,
                seq_len=seq_len,
                lr=lr,
                warmup_steps=warmup,
                max_steps=max_steps,
                max_tokens=max_tokens,
                epochs=epochs,
                max_minutes=max_minutes,
                eval_every=eval_every,
                eval_max_tokens=eval_max_tokens,
                patience=patience,
                max_latency_ms=max_latency_ms,
                max_energy_uj=max_energy_uj,
                energy_hardware=energy_hardware,
                seed=seed,
                device=device,
            )
        console.print(f"Data: {prepared.source} ({prepared.tokenizer.describe()})")
        _, res = train_one(cfg, prepared, tcfg, run_dir, resume=resume, console=console)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if res.status == "diverged":
        raise typer.Exit(1)


def _resolve_checkpoint(path: str) -> Path:
    p = Path(path)
    if (p / "model.safetensors").is_file():
        return p
    if (p / "best" / "model.safetensors").is_file():
        return p / "best"
    from .train import latest_checkpoint

    ck = latest_checkpoint(p)
    if ck is None:
        _fail(f"{p} is neither a model folder nor a run folder with checkpoints")
    return ck


def _run_info(ckpt: Path) -> dict:
    for d in (ckpt, ckpt.parent, ckpt.parent.parent):
        if (d / "run.json").is_file():
            return json.loads((d / "run.json").read_text())
    return {}


@app.command("eval")
def eval_(
    checkpoint: Annotated[str, typer.Argument(help="Model folder, checkpoint or run folder.")],
    split: Annotated[str, typer.Option(help="valid or test.")] = "test",
    data: Annotated[str | None, typer.Option("--data", help="Corpus (default: the run's).")] = None,
    data_dir: DataDirOpt = None,
    seq_len: int | None = None,
    batch_size: int = 32,
    device: str = "auto",
) -> None:
    """Perplexity of a saved model on a split (protocol printed with the number)."""
    from .data import load_tokenizer
    from .model import QTensorFormer
    from .train import PROTOCOL, evaluate, resolve_device
    from .train.run import prepare_data

    ckpt = _resolve_checkpoint(checkpoint)
    info = _run_info(ckpt)
    try:
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(ckpt / "tokenizer")
        prepared = prepare_data(data or info.get("data", "wikitext-2"), data_dir, tok)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    if split not in ("valid", "test"):
        _fail(f"split must be valid or test, got {split!r}")
    L = seq_len or info.get("train_config", {}).get("seq_len", model.config.max_seq_len)
    dev = resolve_device(device)
    res = evaluate(
        model.to(dev), prepared.ids[split], L, batch_size, None, prepared.words[split], dev
    )
    t = Table(title=f"{ckpt}: {prepared.name} {split}")
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("perplexity", f"{res.ppl:.2f}")
    if tok.kind != "word":
        t.add_row("perplexity per word", f"{res.word_ppl:.2f}")
    t.add_row("tokens", f"{res.tokens:,}")
    t.add_row("parameters", f"{model.num_parameters():,}")
    console.print(t)
    console.print(f"[dim]{tok.describe()}; perplexity: {PROTOCOL.format(L=L)}.[/]")


@app.command()
def generate(
    checkpoint: Annotated[str, typer.Argument(help="Model folder, checkpoint or run folder.")],
    prompt: Annotated[str, typer.Option(help="Text to continue.")] = "the",
    max_new_tokens: int = 30,
    temperature: float = 0.8,
    top_k: int | None = 40,
    seed: int = 0,
) -> None:
    """Continue a prompt with a saved model."""
    import torch

    from .data import load_tokenizer
    from .model import QTensorFormer

    ckpt = _resolve_checkpoint(checkpoint)
    try:
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(ckpt / "tokenizer")
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    ids = tok.encode(prompt) or [tok.eos_id]
    gen = torch.Generator().manual_seed(seed)
    out = model.generate(torch.tensor([ids]), max_new_tokens, temperature, top_k, gen)
    console.print(f"[bold]{prompt}[/] {tok.decode(out[0, len(ids) :].tolist())}")


@app.command("compare")
def compare_cmd(
    presets: Annotated[list[str] | None, typer.Option("--presets", help="Preset(s).")] = None,
    variants: Annotated[
        str, typer.Option(help="Comma-separated: dense,tt,default,all.")
    ] = "dense,tt,all",
    data: DataOpt = "wikitext-2",
    data_dir: DataDirOpt = None,
    tokenizer: TokOpt = "word",
    budget_minutes: Annotated[
        float | None, typer.Option(help="Wall-clock limit per model.")
    ] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Token budget per model.")] = None,
    batch_size: int = 16,
    seq_len: int = 128,
    lr: float = 3e-3,
    warmup: int = 100,
    eval_every: int = 1000,
    seed: int = 0,
    set_: SetOpt = None,
    out: Annotated[str, typer.Option(help="Output folder.")] = "runs/compare",
    device: str = "auto",
) -> None:
    """Dense baseline vs Q-TensorFormer variants, trained the same way; one table."""
    from .train.run import compare, overrides_from_pairs, prepare_data

    names = [v.strip() for v in variants.split(",") if v.strip()]
    try:
        prepared = prepare_data(data, data_dir, tokenizer)
        overrides = overrides_from_pairs(set_ or [])
        overrides.setdefault("max_seq_len", max(seq_len, 32))
        tcfg = _train_config(
            batch_size=batch_size,
            seq_len=seq_len,
            lr=lr,
            warmup_steps=warmup,
            max_tokens=max_tokens,
            max_minutes=budget_minutes,
            eval_every=eval_every,
            seed=seed,
            device=device,
        )
        for p in presets or ["small"]:
            compare(names, p, prepared, tcfg, Path(out) / p, console=console, **overrides)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))


@app.command()
def demo(
    max_tokens: Annotated[int, typer.Option(help="Training tokens per model.")] = 250_000,
    variants: Annotated[str, typer.Option(help="Comma-separated variants.")] = "dense,tt,all",
    out: Annotated[str, typer.Option(help="Run folder.")] = "runs/demo",
    seed: int = 0,
) -> None:
    """The main job on the embedded default: dense vs Q-TensorFormer on the synthetic corpus.

    Trains the small preset three ways (dense baseline, TT compression only, every pillar) on
    the same tokens, schedule and seed, then prints parameters, test perplexity and speed and
    writes every run into ``--out``. A few minutes on 2 CPU cores.
    """
    from .train.run import compare, prepare_data

    prepared = prepare_data("synthetic", tokenizer="word")
    console.print(
        f"Synthetic corpus ({prepared.source}): {prepared.ids['train'].numel():,} training "
        f"tokens, {prepared.tokenizer.describe()}"
    )
    tcfg = _train_config(
        batch_size=16,
        seq_len=64,
        lr=3e-3,
        warmup_steps=30,
        max_tokens=max_tokens,
        eval_every=10_000,
        eval_max_tokens=20_000,
        seed=seed,
        progress=True,
    )
    names = [v.strip() for v in variants.split(",") if v.strip()]
    compare(names, "small", prepared, tcfg, Path(out), console=console, max_seq_len=64)
    console.print(f"Runs written to {out}/ (metrics.jsonl, checkpoints, summary.json each)")


@app.command("export")
def export_cmd(
    checkpoint: Annotated[str, typer.Argument(help="Model folder, checkpoint or run folder.")],
    onnx: Annotated[str, typer.Option("--onnx", help="Output .onnx file.")],
    verify: Annotated[
        bool, typer.Option(help="Run the file in onnxruntime and compare logits with torch.")
    ] = True,
    atol: Annotated[float, typer.Option(help="Largest allowed logit difference.")] = 1e-4,
) -> None:
    """Export a model to ONNX (input_ids → logits, dynamic batch and length), checked in
    onnxruntime against torch."""
    from .export import ExportError, export_onnx
    from .model import QTensorFormer

    ckpt = _resolve_checkpoint(checkpoint)
    try:
        model = QTensorFormer.from_pretrained(ckpt)
        res = export_onnx(model, onnx, verify=verify, atol=atol)
    except (ExportError, ValueError, ImportError, FileNotFoundError, RuntimeError) as e:
        _fail(str(e))
    params = sum(p.numel() for p in model.parameters())
    msg = f"wrote {res['path']} ({res['bytes'] / 1e6:.2f} MB; {params:,} parameters"
    msg += f", {params * 4 / 1e6:.2f} MB in float32)"
    console.print(msg)
    if res["max_abs_diff"] is not None:
        console.print(
            f"onnxruntime vs torch: largest logit difference {res['max_abs_diff']:.2e} "
            f"(atol {atol:g}, two input shapes)"
        )


@app.command()
def explain(
    checkpoint: Annotated[str, typer.Argument(help="Model folder, checkpoint or run folder.")],
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
    import torch

    from .data import load_tokenizer
    from .explain import LLMExplainer, explain_budget, explain_trail
    from .model import QTensorFormer

    ckpt = _resolve_checkpoint(checkpoint)
    try:
        model = QTensorFormer.from_pretrained(ckpt)
        tok = load_tokenizer(ckpt / "tokenizer") if (ckpt / "tokenizer").is_dir() else None
        ids = tok.encode(text) if tok is not None else [int(t) for t in text.split()]
        if not ids:
            _fail("--text gives no tokens")
        ids = ids[: model.config.max_seq_len]
        trail = model.audit(torch.tensor(ids), tok)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    for li in layer if layer else range(trail.n_layers):
        if not 0 <= li < trail.n_layers:
            _fail(f"--layer {li} out of range: the model has {trail.n_layers} layers")
        console.print(trail.table(li))
    events = []
    for d in (ckpt, ckpt.parent, ckpt.parent.parent):
        if (d / "metrics.jsonl").is_file():
            lines = (d / "metrics.jsonl").read_text().splitlines()
            events = [e for e in map(json.loads, lines) if e.get("event") == "budget"]
            break
    if explainer_url:
        try:
            ex = LLMExplainer(explainer_url, explainer_model, api_key_env, timeout)
        except ValueError as e:
            _fail(str(e))
        res = ex.explain(trail, events)
        if res.source != "llm":
            console.print(f"[yellow]explainer unavailable ({res.error}); template explanations:[/]")
        console.print(res.text)
    else:
        for line in explain_trail(trail) + explain_budget(events):
            console.print(line)
    if json_out:
        trail.save(json_out)
        console.print(f"wrote {json_out}")


@app.command()
def report(
    run_dir: Annotated[
        str, typer.Argument(help="Run folder (qtf train) or comparison (qtf compare/demo).")
    ],
    out: Annotated[str | None, typer.Option(help="Output folder (default RUN_DIR/report).")] = None,
    text: Annotated[
        str | None,
        typer.Option(help="Sample text for the per-token figure (default: validation text)."),
    ] = None,
    data_dir: DataDirOpt = None,
    seq_len: Annotated[int, typer.Option(help="Query length of the energy estimates.")] = 128,
) -> None:
    """Write a Markdown report and a self-contained HTML page with training curves, Pareto
    front, per-token decisions, entropy/rank/routing per layer and estimated energy."""
    from .report import write_report

    try:
        paths = write_report(run_dir, out, text=text, data_dir=data_dir, seq_len=seq_len)
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    console.print(f"wrote {paths['markdown']} and {paths['html']}")
    figs = [p.name for k, p in paths.items() if k not in ("markdown", "html")]
    console.print(f"figures: {', '.join(figs)}")


@app.command()
def energy(
    checkpoint: Annotated[
        str | None,
        typer.Argument(help="Model folder, checkpoint or run folder (else --preset/--variant)."),
    ] = None,
    hardware: Annotated[
        str, typer.Option(help="Profile name(s), comma-separated, or 'all'.")
    ] = "all",
    preset: Annotated[str, typer.Option(help="Preset of a freshly built model.")] = "small",
    variant: Annotated[str, typer.Option(help="Pillars of a freshly built model.")] = "all",
    vocab_size: Annotated[int, typer.Option(help="Vocabulary of a freshly built model.")] = 10000,
    seq_len: Annotated[int, typer.Option(help="Tokens per query.")] = 128,
    carbon_intensity: Annotated[
        float, typer.Option(help="Grid gCO2/kWh (default: 2023 global average).")
    ] = 480.0,
    pue: Annotated[float, typer.Option(help="Facility power usage effectiveness.")] = 1.0,
    utilisation: Annotated[
        float | None, typer.Option(help="Override the assumed fraction of peak throughput.")
    ] = None,
    seed: int = 0,
    json_out: Annotated[
        str | None, typer.Option("--json", help="Also write the estimates to this JSON file.")
    ] = None,
) -> None:
    """Estimated energy, carbon and latency per query on each hardware profile, with the
    measured latency on this machine beside them (FLOPs from a forward pass on random tokens)."""
    import torch

    from .energy import PROFILES, EnergyEstimator, measure_latency, model_flops

    names = list(PROFILES) if hardware == "all" else [h.strip() for h in hardware.split(",")]
    try:
        if checkpoint is not None:
            from .model import QTensorFormer

            ckpt = _resolve_checkpoint(checkpoint)
            model, source = QTensorFormer.from_pretrained(ckpt), str(ckpt)
        else:
            from .model import QTensorFormer
            from .train.run import model_config

            torch.manual_seed(seed)
            model = QTensorFormer(model_config(variant, preset, vocab_size, max_seq_len=seq_len))
            source = f"{preset}/{variant}, vocabulary {vocab_size:,}, untrained (seed {seed})"
        if seq_len > model.config.max_seq_len:
            _fail(f"--seq-len {seq_len} exceeds the model's max_seq_len {model.config.max_seq_len}")
        estimators = [
            EnergyEstimator(n, carbon_intensity=carbon_intensity, pue=pue, utilisation=utilisation)
            for n in names
        ]
    except (ValueError, FileNotFoundError) as e:
        _fail(str(e))
    flops = model_flops(model, seq_len, seed=seed)
    measured = measure_latency(model, seq_len)
    t = Table(
        title=f"Energy per query of {seq_len} tokens: {source}",
        caption="ESTIMATES: FLOPs × J/FLOP of each profile (power / (peak × utilisation); "
        "derivations in docs/ENERGY.md); carbon at "
        f"{carbon_intensity:g} gCO2/kWh, PUE {pue:g}. Measured latency on this machine: "
        f"{measured:.2f} ms.",
    )
    for col in (
        "hardware",
        "pJ/FLOP",
        "energy µJ (est.)",
        "carbon µg (est.)",
        "latency ms (est.)",
        "QPU circuits",
    ):
        t.add_column(col, justify="left" if col == "hardware" else "right")
    rows = []
    for est in estimators:
        e = est.estimate(flops)
        rows.append(e.to_dict())
        t.add_row(
            e.hardware,
            f"{e.joules_per_flop * 1e12:.3g}",
            f"{e.energy_uj:,.4g}",
            f"{e.carbon_ug:,.4g}",
            f"{e.latency_ms:,.4g}",
            f"{e.qpu_circuits:,}" if est.profile.kind == "qpu" else "-",
        )
    console.print(t)
    f = Table(title=f"FLOPs of the query (forward, {flops.per_token:,.0f} per token)")
    f.add_column("module")
    f.add_column("FLOPs", justify="right")
    f.add_column("share", justify="right")
    for k, v in flops.by_module.items():
        f.add_row(k, f"{v:,}", f"{v / max(flops.total, 1):.1%}")
    console.print(f)
    if json_out:
        from .train.checkpoint import write_json

        payload = {
            "source": source,
            "seq_len": seq_len,
            "flops": flops.to_dict(),
            "measured_latency_ms": measured,
            "estimates": rows,
        }
        write_json(Path(json_out), payload)
        console.print(f"wrote {json_out}")


@app.command()
def params(
    preset: Annotated[
        list[str] | None,
        typer.Option("--preset", "-p", help="Preset(s) to show (default: all of them)."),
    ] = None,
    vocab_size: int = typer.Option(10000, help="Vocabulary size."),
    tt_rank: int = typer.Option(8, help="TT rank of the compressed models."),
    per_component: bool = typer.Option(False, help="Also print the per-component table."),
) -> None:
    """Parameter counts of every preset, dense and compressed (TT embedding, attention and
    FFN, quantum encoder), counted on the built model and by formula from the config."""
    import torch

    from .config import PRESETS, ModelConfig, count_parameters
    from .model import QTensorFormer

    names = preset or list(PRESETS)
    for n in names:
        if n not in PRESETS:
            raise typer.BadParameter(f"unknown preset {n!r}; choose from {sorted(PRESETS)}")
    t = Table(
        title=f"Parameters (vocab_size={vocab_size:,}, TT rank {tt_rank})",
        caption="compressed = the default ModelConfig: TT embedding, attention and FFN at the "
        "TT rank, quantum encoder on; built = counted on the model, formula = "
        "count_parameters(config)",
    )
    for col in ("preset", "d / layers", "model", "built", "formula", "dense / this"):
        t.add_column(col, justify="left" if col in ("preset", "model") else "right")
    details = []
    for n in names:
        dense_cfg = ModelConfig.dense(n, vocab_size=vocab_size)
        for label, cfg in (
            ("dense", dense_cfg),
            ("compressed", ModelConfig.preset(n, vocab_size=vocab_size, tt_rank=tt_rank)),
        ):
            with torch.device("meta"):  # count without allocating weights
                model = QTensorFormer(cfg)
            built = model.parameter_table()
            formula = count_parameters(cfg)
            if built != formula:
                raise RuntimeError(
                    f"parameter count mismatch for {n}/{label}: {built} vs {formula}"
                )
            ratio = count_parameters(dense_cfg)["total"] / built["total"]
            t.add_row(
                n,
                f"{cfg.d_model} / {cfg.n_layers}",
                label,
                f"{built['total']:,}",
                f"{formula['total']:,}",
                f"{ratio:.2f}×",
            )
            details.append((n, label, built))
    console.print(t)
    if per_component:
        keys = list(details[0][2])
        d = Table(title="Parameters per component (D = dense, C = compressed)")
        d.add_column("component")
        for n, label, _ in details:
            d.add_column(f"{n}/{label[0].upper()}", justify="right")
        for k in keys:
            d.add_row(k, *(f"{built[k]:,}" for _, _, built in details))
        console.print(d)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
