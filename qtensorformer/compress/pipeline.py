"""One compression run end to end: load a causal LM, calibrate, compress, measure, save.

``qtf compress`` is a thin layer over :func:`compress_model`; the saved folder loads back with
:func:`~qtensorformer.compress.load_causal_lm` (as ``qtf eval`` and ``qtf generate`` do).

Example:
    >>> import tempfile
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.compress import compress_, save_compressed, SVDConfig
    >>> model = QTensorFormer(ModelConfig.dense(vocab_size=50, d_model=16, n_heads=2))
    >>> report = compress_(model, SVDConfig(ratio=0.5))
    >>> folder = tempfile.mkdtemp()
    >>> _ = save_compressed(model, report, folder)
    >>> from qtensorformer.compress import load_causal_lm
    >>> back = load_causal_lm(folder)
    >>> ids = torch.randint(0, 50, (1, 8))
    >>> torch.equal(back.model(ids)[0], model.eval()(ids)[0]), back.kind
    (True, 'compressed')
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..data.tokenizers import Tokenizer
from ..files import TOKENIZER_DIR, RunDir, write_json
from .analysis import AnalysisConfig, analyze, sensitivity_weights
from .api import compress_
from .checkpoint import save_compressed
from .config import CalibrationConfig, MethodConfig, TTAwareConfig, method_config
from .evaluate import (
    PerplexityResult,
    calibration_ids,
    find_raw_text,
    ids_perplexity,
    measure_tokens_per_second,
    raw_text_perplexity,
    text_token_ids,
)
from .heal import HealConfig, HealResult, heal
from .memory import current_rss_mib, peak_rss_mib, reset_peak_rss
from .models import load_causal_lm
from .summary import CompressionReport

__all__ = ["CompressRun", "compress_model", "default_holdout"]


@dataclass
class CompressRun:
    """What :func:`compress_model` did: the model's source and kind, the method config, the
    compression report, perplexity and forward tokens/s before and after (on the same text
    and protocol; None when not measured), the compression's wall time (calibration
    included), memory (MiB: the process's resident memory before compressing, after the
    load and the first evaluation; the peak during the compression, None where the system
    cannot reset the peak; the process's peak over the whole run), and the output folder
    (None when not saved).
    With healing: ``heal`` (what the fine-tune did) and ``healed`` (perplexity after it;
    ``after`` stays the perplexity straight after compression)."""

    source: str
    kind: str
    method: str
    config: dict[str, Any]
    report: CompressionReport
    calibration: str
    before: PerplexityResult | None = None
    after: PerplexityResult | None = None
    tokens_per_second_before: float | None = None
    tokens_per_second_after: float | None = None
    compress_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    model_bytes_float32: int = 0
    out: Path | None = None
    heal: HealResult | None = None
    healed: PerplexityResult | None = None
    heal_seconds: float = 0.0
    rss_before_compress_mib: float = 0.0
    compress_peak_rss_mib: float | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["report"] = self.report.to_dict()
        d["out"] = str(self.out) if self.out is not None else None
        if self.heal is not None:
            d["heal"]["run_dir"] = str(self.heal.run_dir)
            d["heal"]["valid_ppl_before"] = self.heal.valid_ppl_before
            d["heal"]["valid_ppl_after"] = self.heal.valid_ppl_after
        return d


def _save_tokenizer(tokenizer: Any, folder: Path) -> None:
    if tokenizer is None:
        return
    if isinstance(tokenizer, Tokenizer):
        tokenizer.save(folder / TOKENIZER_DIR)
    else:
        tokenizer.save_pretrained(str(folder / TOKENIZER_DIR))


def _heal(
    model: Any,
    tok: Any,
    source: Path,
    config: HealConfig,
    report: CompressionReport,
    out: str | Path | None,
    resume: bool,
) -> HealResult:
    """Fine-tune on every token of ``source``; checkpoints in ``out/heal`` (else a temporary
    folder, removed afterwards)."""
    ids, _ = text_token_ids(tok, source)
    if out is not None:
        return heal(model, ids, config, Path(out) / "heal", report=report, resume=resume)
    with tempfile.TemporaryDirectory() as tmp:
        return heal(model, ids, config, tmp, report=report)


#: The sensitivity measurement of ``allocation="sensitivity"``: calibration sequences for
#: its statistics, and held-out windows (of at most ``SENSITIVITY_LEN`` tokens) scored per
#: layer.
SENSITIVITY_SAMPLES, SENSITIVITY_WINDOWS, SENSITIVITY_LEN = 8, 4, 512


def _importance(
    model: Any, tok: Any, source: Path, calib, ratio: float, progress: bool
) -> tuple[dict[str, float], str]:
    """Importance weights from each layer's measured sensitivity (perplexity on held-out
    windows of the calibration text, the ones right after the calibration tokens, with only
    that layer truncated at ``ratio``), and a description of how they were measured."""
    ids, _ = text_token_ids(tok, source)
    L = min(calib.shape[1], SENSITIVITY_LEN)
    need = SENSITIVITY_WINDOWS * L
    start = calib.numel() if len(ids) >= calib.numel() + need else max(0, len(ids) - need)
    held = ids[start : start + need].reshape(SENSITIVITY_WINDOWS, L)
    config = AnalysisConfig(ratio=ratio, progress=progress)
    rep = analyze(model, calib[:SENSITIVITY_SAMPLES], config, lambda m: ids_perplexity(m, held))
    overlap = "" if start == calib.numel() else ", overlapping the calibration (text too short)"
    how = (
        f"layer sensitivities on {SENSITIVITY_WINDOWS} × {L} tokens of {source} after the "
        f"calibration tokens{overlap}"
    )
    return sensitivity_weights(rep), how


def default_holdout(config: MethodConfig, calib_samples: int) -> int:
    """Calibration sequences held out by default: an eighth (at least one) for ``tt-aware``
    choosing its topology, which it does on held-out data; none for every other method.

    Example:
        >>> default_holdout(TTAwareConfig(ratio=0.4), 32), default_holdout(TTAwareConfig(
        ...     ratio=0.4, topology="strict"), 32)
        (4, 0)
    """
    if isinstance(config, TTAwareConfig) and config.topology == "auto" and calib_samples > 1:
        return max(1, calib_samples // 8)
    return 0


def compress_model(
    spec: str | Path,
    method: str = "svd-llm",
    *,
    ratio: float = 0.2,
    allocation: str = "uniform",
    method_options: dict[str, Any] | None = None,
    calib_data: str | Path | None = None,
    calib_samples: int = 32,
    seq_len: int = 1024,
    eval_text: str | Path | None = None,
    eval_windows: int | None = 16,
    eval_before: bool = True,
    measure_speed: bool = True,
    out: str | Path | None = None,
    resume: bool = False,
    heal_steps: int = 0,
    heal_options: dict[str, Any] | None = None,
    sequential: bool = True,
    calib_batch_size: int = 4,
    calib_holdout: int | None = None,
    progress: bool = True,
) -> CompressRun:
    """Load ``spec`` (see :func:`load_causal_lm`), compress every linear of its blocks with
    ``method`` at ``ratio`` of their parameters removed, measure, and save to ``out``.

    Calibration (aware methods): ``calib_samples`` × ``seq_len`` tokens from ``calib_data``
    (default: the raw WikiText-2 valid split; the raw train split is not in the data folder).
    Perplexity before (unless ``eval_before=False``) and after: ``eval_windows``
    non-overlapping ``seq_len``-token windows of ``eval_text`` (default: the raw WikiText-2
    test split; ``eval_windows=0`` skips it). ``measure_speed``: forward tokens/s before and
    after, in this process.
    ``sequential=False`` collects every block's statistics from the uncompressed model's
    activations instead of the compressed blocks' outputs (see
    :class:`~qtensorformer.compress.CalibrationConfig`). ``calib_batch_size`` calibration
    sequences run per forward (the activations of one forward; on SmolLM2 the peak memory
    is the same at 1 and 4: docs/RESULTS.md, compression memory). ``calib_holdout``: the
    last sequences of the calibration kept out of the fit, on which every module's
    held-out error is measured and ``tt-aware`` with ``topology="auto"`` chooses each
    matrix's topology (default: an eighth of them for that method, since the in-sample
    error favours the more flexible strict train, which overfits; none otherwise).
    ``resume`` keeps per-block progress in ``out`` so that an interrupted run goes on from
    its last finished block (and an interrupted healing from its last checkpoint).
    ``heal_steps`` > 0: fine-tune the compressed model for that many steps on the whole
    calibration text (:func:`~qtensorformer.compress.heal.heal`; ``heal_options``: other
    :class:`~qtensorformer.compress.heal.HealConfig` fields, windows of at most ``seq_len``
    tokens; checkpoints in ``out/heal``)
    and score it again.
    """
    loaded = load_causal_lm(spec)
    model, tok = loaded.model, loaded.tokenizer
    by_sensitivity = allocation == "sensitivity"
    options = method_options or {}
    if by_sensitivity:  # check the method and options now; the weights come after calibration
        method_config(method, ratio=ratio, allocation=allocation, importance={"": 1.0}, **options)
    plain = "uniform" if by_sensitivity else allocation
    config = method_config(method, ratio=ratio, allocation=plain, **options)
    heal_config = None
    if heal_steps:
        heal_fields = {"seq_len": min(HealConfig.seq_len, seq_len), **(heal_options or {})}
        heal_config = HealConfig(steps=heal_steps, progress=progress, **heal_fields)
    needs_text = config.aware or heal_config is not None
    if needs_text and tok is None:
        why = f"{method} needs calibration text" if config.aware else "healing needs text"
        raise ValueError(f"{why}, but {loaded.source} has no tokenizer saved with it")
    f32_bytes = sum(p.numel() for p in model.parameters()) * 4
    run_eval = bool(eval_windows) and tok is not None
    text = (
        Path(eval_text) if eval_text is not None else (find_raw_text("test") if run_eval else None)
    )
    eval_kw = {"seq_len": seq_len, "windows": eval_windows, "progress": progress}
    before = raw_text_perplexity(model, tok, text, **eval_kw) if run_eval and eval_before else None
    tps_before = measure_tokens_per_second(model, seq_len=seq_len) if measure_speed else None
    source = None
    if needs_text:
        source = Path(calib_data) if calib_data is not None else find_raw_text("valid")
    calib, calib_desc, holdout = None, "none (data-free method)", 0
    if config.aware:
        calib = calibration_ids(tok, source, n_samples=calib_samples, seq_len=seq_len)
        calib_desc = f"{calib_samples} × {seq_len} tokens of {source}" + (
            "" if sequential else " (statistics of the uncompressed model, not sequential)"
        )
        holdout = default_holdout(config, calib_samples) if calib_holdout is None else calib_holdout
        if holdout:
            calib_desc += f"; the last {holdout} held out of the fit"
    if by_sensitivity:
        if calib is None:
            raise ValueError("allocation='sensitivity' needs an activation-aware method")
        importance, how = _importance(model, tok, source, calib, ratio, progress)
        config = dataclasses.replace(config, allocation="sensitivity", importance=importance)
        calib_desc += f"; {how}"
    rss_before = current_rss_mib()
    process_peak = peak_rss_mib()
    can_reset = reset_peak_rss()
    t0 = time.perf_counter()
    report = compress_(
        model,
        config,
        calibration=calib,
        options=CalibrationConfig(
            batch_size=calib_batch_size,
            holdout=holdout,
            progress=progress,
            sequential=sequential,
        ),
        resume_dir=Path(out) / "resume" if (resume and out is not None) else None,
    )
    seconds = time.perf_counter() - t0
    compress_peak = peak_rss_mib() if can_reset else None
    model.eval()
    after = raw_text_perplexity(model, tok, text, **eval_kw) if run_eval else None
    healed, healing, heal_seconds = None, None, 0.0
    if heal_config is not None:
        t1 = time.perf_counter()
        healing = _heal(model, tok, source, heal_config, report, out, resume)
        heal_seconds = time.perf_counter() - t1
        healed = raw_text_perplexity(model, tok, text, **eval_kw) if run_eval else None
    tps_after = measure_tokens_per_second(model, seq_len=seq_len) if measure_speed else None
    run = CompressRun(
        str(spec),
        loaded.kind,
        method,
        {"ratio": ratio, "allocation": allocation, **(method_options or {})},
        report,
        calib_desc,
        before,
        after,
        tps_before,
        tps_after,
        seconds,
        max(process_peak, peak_rss_mib()),
        f32_bytes,
        heal=healing,
        healed=healed,
        heal_seconds=heal_seconds,
        rss_before_compress_mib=rss_before,
        compress_peak_rss_mib=compress_peak,
    )
    if out is not None:
        run.out = Path(out)
        save_compressed(model, report, run.out)
        _save_tokenizer(tok, run.out)
        write_json(run.out / "compress_run.json", run.to_dict())
        if run.heal is not None:
            _drop_heal_weights(run.heal.run_dir)
    return run


def _drop_heal_weights(heal_dir: Path) -> None:
    """Once the healed model is saved, its training checkpoints and ``best/`` copy are
    redundant (several times the model's size); the logs stay."""
    run = RunDir(heal_dir)
    for folder in (run.checkpoints, run.best):
        shutil.rmtree(folder, ignore_errors=True)
