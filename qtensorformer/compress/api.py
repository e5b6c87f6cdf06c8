"""compress_: replace the chosen linears of a pretrained model by compressed layers, in place.

Data-free methods (``svd``, ``tt``) run matrix by matrix; with calibration data (always for
the activation-aware ``asvd``, ``svd-llm``, ``tt-aware``) the run goes block by block (see
:mod:`qtensorformer.compress.calibrate`): each block's linears are compressed from the
statistics of that block's inputs, which come from the blocks before it, already compressed.
``basis-sharing`` goes group by group of adjacent blocks instead (:func:`_group_passes`):
the group's blocks run one after another, uncompressed, to collect every member's
statistics, then the group is compressed (:mod:`qtensorformer.compress.sharing`) and runs
again to give the next group's inputs. ``ttns`` is one such group of every block
(:mod:`qtensorformer.compress.ttns`): its trees span all layers, so all statistics come
from the uncompressed model in one pass.
``allocation="spectrum"`` (and ``"spectrum-absolute"``) needs every matrix's spectrum
first; for aware methods that is one extra calibration pass over the uncompressed model.

Example:
    >>> import torch
    >>> from qtensorformer import ModelConfig, QTensorFormer
    >>> from qtensorformer.compress import CalibrationConfig, SVDLLMConfig
    >>> model = QTensorFormer(ModelConfig.dense(vocab_size=50, d_model=32, n_layers=2, n_heads=2))
    >>> ids = torch.randint(0, 50, (4, 16), generator=torch.Generator().manual_seed(0))
    >>> report = compress_(model, SVDLLMConfig(ratio=0.3), calibration=ids,
    ...                    options=CalibrationConfig(progress=False))
    >>> list(report.modules)[:2]
    ['blocks.0.attn.qkv', 'blocks.0.attn.out']
    >>> 0.29 < report.selected_ratio < 0.45
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..nn.replace import FilterFn, replace_modules
from .budget import allocate_spectrum, param_budget
from .calibrate import (
    BlockInputs,
    InputStats,
    StatsCollector,
    block_output,
    capture_block_inputs,
    check_calibration,
    find_blocks,
    is_compressible,
    linear_weight,
)
from .config import BasisSharingConfig, CalibrationConfig, MethodConfig, SVDLLMConfig, TTNSConfig
from .linalg import activation_error, weight_error
from .methods import compress_matrix, matrix_spectrum, min_params, target_from_module
from .progress import progress_bar
from .resume import Resume, fingerprint
from .sharing import block_groups, compress_shared, shared_types, split_group
from .summary import CompressionReport, ModuleReport
from .ttns import compress_tree, tree_sets, ttns_types

__all__ = ["compress_", "layer_statistics", "select_linears"]

#: (rank, max_params) of one matrix
Budget = tuple[int | None, int | None]


def select_linears(
    model: nn.Module, filter_fn: FilterFn | None = None
) -> tuple[dict[str, nn.Module], str | None]:
    """The compressible linears ``compress_`` would replace, and the blocks' path.

    Default: every ``nn.Linear`` / ``Conv1D`` inside the repeated blocks (not the LM head or
    the embeddings); with ``filter_fn(module, name)``: every compressible module it accepts.
    """
    try:
        path: str | None = find_blocks(model)[0]
    except ValueError:
        if filter_fn is None:
            raise
        path = None
    prefix = f"{path}."
    chosen = {}
    for name, module in model.named_modules():
        if not is_compressible(module, name):
            continue
        ok = name.startswith(prefix) if filter_fn is None else filter_fn(module, name)
        if ok:
            chosen[name] = module
    if not chosen:
        raise ValueError(
            f"the filter selected no nn.Linear / Conv1D in {type(model).__name__}: check "
            "filter_fn against the names in model.named_modules()"
        )
    return chosen, path


def layer_statistics(
    model: nn.Module,
    calibration: torch.Tensor,
    filter_fn: FilterFn | None = None,
    options: CalibrationConfig | None = None,
) -> dict[str, tuple[torch.Tensor, InputStats, InputStats | None]]:
    """The weight (float64, (n, m)), the input statistics on the calibration rows and on
    the ``options.holdout`` held-out rows (None without) of every linear ``compress_`` would
    select, from one block-by-block pass over the *uncompressed* model (nothing replaced).

    Memory: one Gram matrix per distinct input and block, twice with a holdout; narrow
    ``filter_fn`` to the types you study on large models.

    Example:
        >>> import torch
        >>> from qtensorformer import ModelConfig, QTensorFormer
        >>> config = ModelConfig.dense(vocab_size=50, d_model=32, n_layers=2, n_heads=2)
        >>> model = QTensorFormer(config)
        >>> ids = torch.randint(0, 50, (3, 16))
        >>> opts = CalibrationConfig(holdout=1, progress=False)
        >>> stats = layer_statistics(model, ids, options=opts)
        >>> W, fit, held = next(iter(stats.values()))
        >>> fit.gram.shape == (W.shape[1], W.shape[1]), fit.tokens, held.tokens
        (True, 32, 16)
    """
    opts = dataclasses.replace(options or CalibrationConfig(), sequential=False)
    selected, path = select_linears(model, filter_fn)
    if path is None:
        raise ValueError("layer_statistics needs a model with repeated blocks (none found)")
    out: dict[str, tuple[torch.Tensor, InputStats, InputStats | None]] = {}

    def visit(prefix, block, mods, stats, held):
        for name, module in mods.items():
            W = linear_weight(module).detach().to(torch.float64).clone()
            out[name] = (W, stats[name], held.get(name))

    with _eval_mode(model):
        _block_passes(model, path, selected, calibration, opts, visit, "statistics")
    return out


# ---------------------------------------------------------------------------- progress
class _Progress:
    """The per-block progress bar of a calibration pass (nothing when disabled)."""

    def __init__(self, enabled: bool, total: int, what: str) -> None:
        self.bar = progress_bar(enabled)
        self.task = self.bar.add_task(what, total=total)

    def __enter__(self) -> _Progress:
        self.bar.start()
        return self

    def __exit__(self, *exc) -> None:
        self.bar.stop()

    def advance(self, description: str | None = None, steps: int = 1) -> None:
        if steps:
            self.bar.update(self.task, advance=steps, description=description)


# ---------------------------------------------------------------------------- block passes
@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was)


def _block_stats(
    block: nn.Module, modules: dict[str, nn.Module], inputs: list[BlockInputs], dtype
) -> tuple[dict[str, InputStats], list[torch.Tensor]]:
    """Input statistics of ``modules`` (inside ``block``) over every stored batch, and the
    block's outputs on them."""
    outputs = []
    with StatsCollector(modules, dtype) as col:
        for inp in inputs:
            outputs.append(block_output(block, inp))
            col.end_forward()
    missing = sorted(set(modules) - set(col.stats))
    if missing:
        raise ValueError(
            f"the calibration forward never called {missing}: deselect them with filter_fn"
        )
    return col.stats, outputs


def _block_modules(selected: dict[str, nn.Module], path: str, i: int) -> dict[str, nn.Module]:
    return {n: m for n, m in selected.items() if n.startswith(f"{path}.{i}.")}


def _next_inputs(inputs: list[BlockInputs], outputs: list[torch.Tensor]) -> list[BlockInputs]:
    return [inp.with_hidden(out) for inp, out in zip(inputs, outputs, strict=True)]


def _capture(model, first_block, calibration, opts) -> tuple[list[BlockInputs], int]:
    """The first block's inputs, fitted batches first, then the held-out ones, and the number
    of fitted batches."""
    N = calibration.shape[0]
    fit = capture_block_inputs(model, first_block, calibration[: N - opts.holdout], opts.batch_size)
    if not opts.holdout:
        return fit, len(fit)
    held = capture_block_inputs(
        model, first_block, calibration[N - opts.holdout :], opts.batch_size
    )
    return fit + held, len(fit)


def _block_passes(model, path, selected, calibration, opts, visit, what, resume=None) -> None:
    """Run the blocks in turn on the calibration inputs; ``visit(prefix, block, names,
    stats, held)`` sees each block's selected modules and their statistics (fitted and
    held-out batches) before the block produces the next block's inputs. With ``resume``
    (a :class:`Resume`), finished blocks are restored and skipped, and every block's end is
    recorded."""
    blocks = find_blocks(model)[1]
    inputs, n_fit = _capture(model, blocks[0], calibration, opts)
    start = 0
    if resume is not None:
        start, inputs = resume.restore(model, inputs)
    with _Progress(opts.progress, len(blocks), what) as bar:
        bar.advance(f"{what}: {start} blocks restored", start)
        for i in range(start, len(blocks)):
            block = blocks[i]
            mods = _block_modules(selected, path, i)
            outputs = None
            if mods:
                stats, out_fit = _block_stats(block, mods, inputs[:n_fit], opts.dtype)
                held, out_held = (
                    _block_stats(block, mods, inputs[n_fit:], opts.dtype)
                    if opts.holdout
                    else ({}, [])
                )
                outputs = out_fit + out_held  # of the block before its compression
                del out_fit, out_held
                visit(f"{path}.{i}.", block, mods, stats, held)
            if outputs is None or opts.sequential:
                outputs = None  # free the uncompressed block's outputs before the rerun
                outputs = [block_output(block, inp) for inp in inputs]
            inputs = _next_inputs(inputs, outputs)
            if resume is not None:
                resume.block_done(i, model, list(mods), inputs, len(blocks))
            bar.advance(f"{what} block {i + 1}/{len(blocks)}")


def _chain_stats(blocks, group, mods, inputs, n_fit, dtype):
    """Run the blocks ``group`` one after another from ``inputs``; return the statistics
    (fitted, held-out) of their modules ``mods`` and the last block's outputs as inputs."""
    stats: dict[str, InputStats] = {}
    held: dict[str, InputStats] = {}
    for i in group:
        if not mods[i]:
            inputs = _next_inputs(inputs, [block_output(blocks[i], inp) for inp in inputs])
            continue
        fit, out_fit = _block_stats(blocks[i], mods[i], inputs[:n_fit], dtype)
        out, out_held = (
            _block_stats(blocks[i], mods[i], inputs[n_fit:], dtype)
            if n_fit < len(inputs)
            else ({}, [])
        )
        stats.update(fit)
        held.update(out)
        inputs = _next_inputs(inputs, out_fit + out_held)
    return stats, held, inputs


def _run_blocks(blocks, group, inputs: list[BlockInputs]) -> list[BlockInputs]:
    for i in group:
        inputs = _next_inputs(inputs, [block_output(blocks[i], inp) for inp in inputs])
    return inputs


def _group_passes(model, path, selected, calibration, opts, groups, visit, what) -> None:
    """Run the blocks group by group (``groups``: lists of adjacent block indices);
    ``visit(names, stats, held)`` sees the selected modules of a group and their statistics,
    collected with the group's blocks uncompressed, before the group (compressed, when
    ``opts.sequential``) produces the next group's inputs."""
    blocks = find_blocks(model)[1]
    inputs, n_fit = _capture(model, blocks[0], calibration, opts)
    with _Progress(opts.progress, len(blocks), what) as bar:
        for group in groups:
            mods = {i: _block_modules(selected, path, i) for i in group}
            stats, held, after = _chain_stats(blocks, group, mods, inputs, n_fit, opts.dtype)
            names = [n for i in group for n in mods[i]]
            if names:
                visit(names, stats, held)
            inputs = _run_blocks(blocks, group, inputs) if opts.sequential else after
            bar.advance(f"{what} blocks {group[0] + 1}–{group[-1] + 1}/{len(blocks)}", len(group))


# ---------------------------------------------------------------------------- budgets
def _shape(module: nn.Module) -> tuple[int, int]:
    return tuple(linear_weight(module).shape)


def _uniform_budgets(config: MethodConfig, selected: dict[str, nn.Module]) -> dict[str, Budget]:
    out = {}
    for name, module in selected.items():
        rank = config.rank_for(name)
        if rank is None and config.ratio is None:
            raise ValueError(f"{name} is not in the config's rank mapping and there is no ratio")
        out[name] = (
            rank,
            None if rank is not None else param_budget(*_shape(module), config.ratio),
        )
    return out


def _spectrum_budgets(
    config: MethodConfig, selected: dict[str, nn.Module], spectra: dict[str, torch.Tensor]
) -> dict[str, Budget]:
    """Explicit ranks stay; the rest share the ratio's budget by global greedy allocation."""
    out = {n: (config.rank_for(n), None) for n in selected if config.rank_for(n) is not None}
    free = {n: _shape(m) for n, m in selected.items() if n not in out}
    floors = {n: min_params(config, shape) for n, shape in free.items()}
    relative = config.allocation in ("spectrum", "sensitivity")
    weights = config.importance if config.allocation == "sensitivity" else None
    missing = sorted(set(free) - set(weights or free))
    if missing:
        raise ValueError(
            f"allocation='sensitivity': no importance weight for {missing[:3]}"
            f"{'…' if len(missing) > 3 else ''}: weigh every selected module"
        )
    ranks = allocate_spectrum(
        {n: spectra[n] for n in free}, free, config.ratio, floors, relative, weights
    )
    for name, r in ranks.items():
        n, m = free[name]
        out[name] = (None, r * (n + m)) if config.tensor_train else (r, None)
    return out


def _spectra(model, config, selected, path, calibration, opts) -> dict[str, torch.Tensor]:
    spectra: dict[str, torch.Tensor] = {}

    def visit(prefix, block, mods, stats, held):
        for name, module in mods.items():
            target = target_from_module(module, name, config, stats[name], rank=1)
            spectra[name] = matrix_spectrum(config, target)

    if config.aware:
        _block_passes(model, path, selected, calibration, opts, visit, "spectra")
    else:
        for name, module in selected.items():
            spectra[name] = matrix_spectrum(
                config, target_from_module(module, name, config, rank=1)
            )
    return spectra


# ---------------------------------------------------------------------------- compressing
def _error(target, res, stats: InputStats | None) -> float | None:
    return None if stats is None else activation_error(target.weight, res.W_hat, stats.gram)


def _compress_one(
    module, name, config, budget: Budget, stats, held
) -> tuple[nn.Module, ModuleReport]:
    t0 = time.perf_counter()
    target = target_from_module(module, name, config, stats, *budget)
    target.holdout = held
    res = compress_matrix(config, target)
    n, m = target.shape
    rec = ModuleReport(
        name,
        config.name,
        res.topology,
        res.ranks,
        n * m,
        res.params,
        0 if target.bias is None else target.bias.numel(),
        weight_error(target.weight, res.W_hat),
        _error(target, res, stats),
        time.perf_counter() - t0,
        res.preconditioner,
        _error(target, res, held),
    )
    return res.module, rec


def _replace_in(root, prefix, names, config, budgets, stats, records, held=None) -> None:
    """Replace the modules ``names`` (full dotted names, under ``root`` at ``prefix``)."""
    held = held or {}

    def build(module: nn.Module, local: str) -> nn.Module:
        name = prefix + local
        new, records[name] = _compress_one(
            module, name, config, budgets[name], stats.get(name), held.get(name)
        )
        return new

    replace_modules(root, build, lambda m, local: prefix + local in names)


def _check_inputs(config: Any, calibration, opts: CalibrationConfig) -> torch.Tensor | None:
    if not isinstance(config, MethodConfig):
        raise TypeError(
            "config must be a compression method config (SVDConfig, ASVDConfig, SVDLLMConfig, "
            "TTConfig, TTAwareConfig, BasisSharingConfig, TTNSConfig), got "
            f"{type(config).__name__}"
        )
    if calibration is None:
        if config.aware:
            raise ValueError(
                f"method {config.name!r} is activation-aware: pass calibration token ids "
                "(a LongTensor (N, L)) as calibration=…, e.g. from calibration_ids()"
            )
        return None
    calibration = check_calibration(calibration, opts.n_samples, opts.seq_len)
    if opts.holdout >= calibration.shape[0]:
        raise ValueError(
            f"holdout={opts.holdout} leaves none of the {calibration.shape[0]} calibration "
            "sequences to fit: hold out fewer or give more calibration"
        )
    return calibration


def _budgets(config, model, selected, path, calibration, opts) -> dict[str, Budget]:
    if config.allocation != "uniform":
        spectra = _spectra(model, config, selected, path, calibration, opts)
        return _spectrum_budgets(config, selected, spectra)
    return _uniform_budgets(config, selected)


def _split_by_blocks(selected, path, config, calibration):
    """(inside, outside) the blocks; aware methods cannot calibrate the outside ones."""
    inside = {n: m for n, m in selected.items() if path is not None and n.startswith(f"{path}.")}
    outside = {n: m for n, m in selected.items() if n not in inside}
    if calibration is not None and outside and config.aware:
        raise ValueError(
            f"only linears inside the repeated blocks can be calibrated; {sorted(outside)} "
            "are outside them: deselect them or use a data-free method (svd, tt)"
        )
    return inside, outside


def _compress_calibrated(
    model, config, inside, path, calibration, opts, budgets, records, resume_dir
):
    """Block by block: each block's linears from the statistics of its inputs."""

    def visit(prefix, block, mods, stats, held):
        _replace_in(block, prefix, set(mods), config, budgets, stats, records, held)

    resume = None
    if resume_dir is not None:
        key = fingerprint(model, _config_dict(config), calibration, budgets, opts)
        resume = Resume(resume_dir, key, records)
    _block_passes(model, path, inside, calibration, opts, visit, "compress", resume)


def _compress_sharing(model, config, inside, path, calibration, opts, budgets, records, resume_dir):
    """Basis Sharing, group by group: each shared type's members in one SharedBasisLinear
    set, the other modules one by one (SVD-LLM at their uniform budget)."""
    if resume_dir is not None:
        raise ValueError(
            "basis-sharing cannot resume an interrupted run (a shared basis spans blocks): "
            "run it without resume_dir / --resume"
        )
    shared = shared_types(config, model, inside, path)

    def visit(names, stats, held):
        sets, singles = split_group(names, path, shared)
        _replace_in(model, "", set(singles), config, budgets, stats, records, held)
        for members in sets:
            modules = {n: inside[n] for n in members}
            compress_shared(model, modules, config, stats, held, records)

    groups = block_groups(len(find_blocks(model)[1]), config.group_size)
    _group_passes(model, path, inside, calibration, opts, groups, visit, "compress")


def _compress_ttns(model, config, inside, path, calibration, opts, budgets, records, resume_dir):
    """TTNS: one calibration pass over every block, uncompressed; then each shared type's
    members in one tree, the other modules one by one (SVD-LLM at their uniform budget)."""
    if resume_dir is not None:
        raise ValueError(
            "ttns cannot resume an interrupted run (a tree spans every block): run it without "
            "resume_dir / --resume"
        )
    shared = ttns_types(config, model, inside, path)
    tree_sets(list(inside), path, shared)  # a shared type in one block only: fail before the pass
    per_layer = SVDLLMConfig(ratio=config.ratio, rank=config.rank, damp=config.damp)

    def visit(names, stats, held):
        sets, singles = tree_sets(names, path, shared)
        _replace_in(model, "", set(singles), per_layer, budgets, stats, records, held)
        for name in singles:
            records[name] = dataclasses.replace(records[name], method=config.name)
        for members in sets:
            compress_tree(model, {n: inside[n] for n in members}, config, stats, held, records)

    every = [list(range(len(find_blocks(model)[1])))]
    once = dataclasses.replace(opts, sequential=False)  # no block runs after the only group
    _group_passes(model, path, inside, calibration, once, every, visit, "compress")


def _runner(config: MethodConfig):
    if isinstance(config, BasisSharingConfig):
        return _compress_sharing
    if isinstance(config, TTNSConfig):
        return _compress_ttns
    return _compress_calibrated


def compress_(
    model: nn.Module,
    config: MethodConfig,
    filter_fn: FilterFn | None = None,
    calibration: torch.Tensor | None = None,
    *,
    options: CalibrationConfig | None = None,
    resume_dir: str | Path | None = None,
) -> CompressionReport:
    """Replace the selected linears of ``model`` in place by ``config``'s method; return the
    :class:`CompressionReport`.

    ``filter_fn(module, name)`` chooses among the model's ``nn.Linear`` / ``Conv1D`` modules
    (default: all inside the repeated blocks). ``calibration``: token ids (N, L), required
    by the activation-aware methods; with it every record also has its activation error.
    ``options``: batch size, the least calibration accepted, progress bar. ``resume_dir``:
    a folder for per-block progress of a calibrated run; rerun with the same arguments to go
    on from the last finished block (see :mod:`qtensorformer.compress.resume`).
    """
    opts = options or CalibrationConfig()
    t0 = time.perf_counter()
    calibration = _check_inputs(config, calibration, opts)
    selected, path = select_linears(model, filter_fn)
    before = sum(p.numel() for p in model.parameters())
    records: dict[str, ModuleReport] = {}
    with _eval_mode(model):
        inside, outside = _split_by_blocks(selected, path, config, calibration)
        budgets = _budgets(config, model, selected, path, calibration, opts)
        data_free = selected
        if calibration is not None and inside:
            run = _runner(config)
            run(model, config, inside, path, calibration, opts, budgets, records, resume_dir)
            data_free = outside
        _replace_in(model, "", set(data_free), config, budgets, {}, records)
    info = None
    if calibration is not None:
        N, L = calibration.shape
        info = {"n_samples": N, "seq_len": L, "tokens": N * L, "holdout": opts.holdout}
        info["sequential"] = opts.sequential and not isinstance(config, TTNSConfig)
    return CompressionReport(
        config.name,
        _config_dict(config),
        {n: records[n] for n in selected},
        before,
        sum(p.numel() for p in model.parameters()),
        info,
        time.perf_counter() - t0,
    )


def _config_dict(config: MethodConfig) -> dict[str, Any]:
    d = asdict(config)
    if d.get("rank") is not None and not isinstance(d["rank"], int):
        d["rank"] = dict(d["rank"])
    return {"method": config.name, **d}
