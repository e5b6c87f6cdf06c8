"""The layer analysis: correlation statistics against scipy, spectrum entropies, the analysis
of tiny Hugging Face models (numbers checked independently, the model left as it was) and
``qtf analyze`` end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from qtensorformer.cli import app
from qtensorformer.compress.analysis import AnalysisConfig, analyze, spectrum_entropy
from qtensorformer.compress.calibrate import linear_weight
from qtensorformer.compress.correlation import pearson, rankdata, spearman
from qtensorformer.compress.linalg import activation_error, damped_gram, lowrank_factors, whitening

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

import tiny_hf  # noqa: E402
from test_compress_pipeline import _text, llama_folder  # noqa: E402, F401


# ---------------------------------------------------------------------------- statistics
@pytest.mark.parametrize("n, slope", [(8, 0.3), (20, 1.0), (30, -0.6)])
def test_correlations_match_scipy(n, slope):
    st = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(n)
    x = rng.normal(size=n)
    y = slope * x + rng.normal(size=n)
    ours, ref = pearson(x, y), st.pearsonr(x, y)
    assert ours.r == pytest.approx(ref.statistic, abs=1e-12)
    ci = ref.confidence_interval(0.95)
    assert ours.ci == pytest.approx((ci.low, ci.high), abs=1e-12)
    # the permutation p estimates the exact p: 9,999 shuffles, a few standard errors
    assert abs(ours.p - ref.pvalue) < 4 * math.sqrt(ref.pvalue * (1 - ref.pvalue) / 9999) + 2e-3
    s_ours, s_ref = spearman(x, y), st.spearmanr(x, y)
    assert s_ours.r == pytest.approx(s_ref.statistic, abs=1e-12)
    assert s_ours.ci[0] < s_ours.r < s_ours.ci[1]
    assert abs(s_ours.p - s_ref.pvalue) < 0.03  # scipy's p is the t approximation


def test_ranks_with_ties_match_scipy():
    st = pytest.importorskip("scipy.stats")
    x = np.random.default_rng(0).integers(0, 5, size=25).astype(float)
    assert np.array_equal(rankdata(x), st.rankdata(x))
    y = x + np.random.default_rng(1).normal(size=25)
    assert spearman(x, y).r == pytest.approx(st.spearmanr(x, y).statistic, abs=1e-12)


@pytest.mark.parametrize(
    "x, y, message",
    [
        ([1, 2, 3], [1, 2, 4], ">= 4 pairs"),
        ([1, 2, 3, 4], [5, 5, 5, 5], "constant"),
        ([1, 2, 3, 4], [1, 2, 3], "one length"),
        ([1, 2, float("nan"), 4], [1, 2, 3, 4], "finite"),
    ],
)
def test_bad_correlation_input(x, y, message):
    with pytest.raises(ValueError, match=message):
        pearson(x, y)


def test_spectrum_entropy_on_known_spectra():
    h, eff, disc = spectrum_entropy(torch.ones(8), 3)
    assert (
        h == pytest.approx(math.log(8)) and eff == pytest.approx(8) and disc == pytest.approx(5 / 8)
    )
    h, eff, disc = spectrum_entropy(torch.tensor([2.0, 0.0, 0.0]), 1)
    assert h == 0 and eff == 1 and disc == 0
    s = torch.rand(10, dtype=torch.float64).sort(descending=True).values
    p = s**2 / (s**2).sum()
    assert spectrum_entropy(s, 4)[0] == pytest.approx(float(-(p * p.log()).sum()), rel=1e-12)


# ---------------------------------------------------------------------------- the analysis
def _loss(model, ids) -> float:
    with torch.no_grad():
        return math.exp(float(model(input_ids=ids, labels=ids).loss))


@pytest.mark.parametrize("build", [tiny_hf.llama, tiny_hf.gpt2])
def test_analysis_of_a_tiny_model(build):
    torch.manual_seed(0)
    model = build(97, **({"num_hidden_layers": 4} if build is tiny_hf.llama else {"n_layer": 4}))
    model = model.double()
    calib = torch.randint(0, 97, (6, 16))
    scored = torch.randint(0, 97, (3, 16))
    before = model(input_ids=scored).logits
    rep = analyze(
        model,
        calib,
        AnalysisConfig(ratio=0.5, progress=False, batch_size=3),
        evaluate=lambda m: _loss(m, scored),
    )
    assert torch.equal(model(input_ids=scored).logits, before)  # weights restored
    assert rep.n_layers == 4 and len(rep.sensitivity) == 4
    per_block = 7 if build is tiny_hf.llama else 4
    assert len(rep.matrices) == 4 * per_block
    assert rep.base_ppl == pytest.approx(_loss(model, scored))
    # an independent check of one matrix: whitened discarded energy = squared activation
    # error of the SVD-LLM truncation on the damped Gram matrix it whitens by
    rec = rep.matrices[1]
    module = dict(model.named_modules())[rec.name]
    W = linear_weight(module).detach().double()
    grams = _grams(model, module, calib)
    A, B = lowrank_factors(W, whitening(grams, 1e-6), rec.rank)
    err = activation_error(W, A @ B, damped_gram(grams, 1e-6))
    assert rec.w_discarded == pytest.approx(err**2, rel=1e-6)
    assert 0 < rec.entropy <= math.log(min(rec.shape)) + 1e-12
    assert rec.effective_rank == pytest.approx(math.exp(rec.entropy))
    # sensitivity: the perplexity with only that layer truncated, rebuilt here
    layer = rep.sensitivity[2]
    assert layer.change == pytest.approx(layer.ppl / rep.base_ppl - 1)
    assert layer.ppl == pytest.approx(_truncated_loss(model, rep, 2, calib, scored), rel=1e-9)
    assert set(rep.correlations) == {"entropy", "w_entropy", "w_discarded"}
    d = json.loads(json.dumps(rep.to_dict()))
    assert d["verdicts"]["w_entropy"]["peak_layer"] in range(4)


def _truncated_loss(model, rep, layer, calib, scored) -> float:
    """The loss with block ``layer``'s matrices replaced by their truncations, built from
    the module list and hooks alone (a copy of the model)."""
    import copy

    twin = copy.deepcopy(model)
    modules = dict(twin.named_modules())
    for rec in (r for r in rep.matrices if r.layer == layer):
        module = modules[rec.name]
        W = linear_weight(module).detach().double()
        A, B = lowrank_factors(
            W,
            whitening(_grams(model, dict(model.named_modules())[rec.name], calib), 1e-6),
            rec.rank,
        )
        conv1d = type(module).__name__ == "Conv1D"
        module.weight.data.copy_((A @ B).T if conv1d else A @ B)
    return _loss(twin, scored)


def _grams(model, module, calib) -> torch.Tensor:
    """XᵀX of ``module``'s inputs over the calibration batch, by a hook."""
    store = []
    handle = module.register_forward_pre_hook(lambda m, args: store.append(args[0].detach()))
    with torch.no_grad():
        model(input_ids=calib)
    handle.remove()
    X = torch.cat([x.reshape(-1, x.shape[-1]) for x in store]).double()
    return X.T @ X


def test_analysis_config_errors():
    with pytest.raises(ValueError, match="ratio must lie in"):
        AnalysisConfig(ratio=1.2)
    with pytest.raises(ValueError, match="batch_size"):
        AnalysisConfig(batch_size=0)


def test_cli_analyze_writes_the_report(llama_folder, tmp_path):  # noqa: F811
    calib, test = tmp_path / "c.txt", tmp_path / "t.txt"
    calib.write_text(_text(400))
    test.write_text(_text(400))
    out = tmp_path / "an"
    args = ["analyze", str(llama_folder), "--out", str(out), "--seq-len", "16"]
    args += ["--calib-samples", "4", "--windows", "2", "--calib-data", str(calib)]
    r = CliRunner().invoke(app, [*args, "--eval-data", str(test)])
    assert r.exit_code == 0, r.output
    assert "w_entropy: peak at layer" in r.output
    md = (out / "analysis.md").read_text()
    assert "## Per layer" in md and "whitened entropy" in md and "figures/spectra.png" in md
    page = (out / "analysis.html").read_text()
    assert page.count("data:image/png;base64,") == 3  # spectra, entropy, sensitivity
    data = json.loads((out / "analysis.json").read_text())
    assert len(data["sensitivity"]) == 2 and data["protocol"].startswith("first 2 ")
    # two layers: too few for a correlation, said without failing
    assert data["correlations"] == {}
    assert "needs at least 4 layers, and this model has 2" in md
    bad = CliRunner().invoke(app, ["analyze", str(llama_folder), "--ratio", "0"])
    assert bad.exit_code == 2 and "ratio must lie in (0, 1)" in bad.output


def test_middle_verdict_needs_the_peak_in_the_middle():
    from qtensorformer.compress.analysis import AnalysisReport, MatrixAnalysis

    def report(values):
        mats = [
            MatrixAnalysis(f"b.{i}.w", i, "w", (4, 4), 2, v, 1.0, 0.1, v, 1.0, 0.1)
            for i, v in enumerate(values)
        ]
        return AnalysisReport(0.4, len(values), {"n_samples": 1, "seq_len": 1}, mats)

    peak_outside = report([1.0, 5.0, 3.0, 3.0, 3.0, 3.0, 0.1, 0.1, 0.1])  # middle mean wins
    v = peak_outside.middle_verdict("entropy")
    assert v["middle_mean"] > v["outer_mean"] and not v["middle_highest"]
    assert v["peak_layer"] == 1 and v["middle"] == (3, 5)
    assert report([1.0, 1.0, 1.0, 2.0, 4.0, 2.0, 1.0, 1.0, 1.0]).middle_verdict("entropy")[
        "middle_highest"
    ]


def test_sensitivity_allocation_end_to_end(llama_folder, tmp_path):  # noqa: F811
    from qtensorformer.compress import compress_model
    from qtensorformer.compress.budget import allocate_spectrum

    calib = tmp_path / "c.txt"
    calib.write_text(_text(1200))
    kw = dict(ratio=0.5, calib_data=calib, calib_samples=4, seq_len=16, eval_windows=0)
    kw |= dict(measure_speed=False, progress=False)
    run = compress_model(llama_folder, "svd-llm", allocation="sensitivity", **kw)
    weights = run.report.config["importance"]
    assert set(weights) == set(run.report.modules) and min(weights.values()) > 0
    assert sum(weights.values()) / len(weights) == pytest.approx(1.0)
    assert 0.5 - 1e-9 <= run.report.selected_ratio < 0.55  # the same budget
    assert "layer sensitivities on 4 × 16 tokens" in run.calibration
    # the weights act as a factor on each matrix's energies in the greedy allocation
    s = {"a": torch.tensor([1.0, 0.5, 0.1]), "b": torch.tensor([1.0, 0.5, 0.1])}
    shapes = {"a": (8, 8), "b": (8, 8)}
    heavy = allocate_spectrum(s, shapes, 0.5, weights={"a": 10.0, "b": 0.1})
    assert heavy["a"] > heavy["b"]
    with pytest.raises(ValueError, match="supports allocation='uniform' only"):
        compress_model(llama_folder, "basis-sharing", allocation="sensitivity", **kw)
    from qtensorformer.compress import SVDLLMConfig

    with pytest.raises(ValueError, match="needs importance weights"):
        SVDLLMConfig(ratio=0.4, allocation="sensitivity")
