"""compress_ on tiny models (GPT-2 with Conv1D, GQA Llama with tied embeddings, this library's
QTensorFormer): exactness at full rank, activation-aware ordering, budgets, calibration
statistics, save/load and input errors. Models are built from configs: no downloads."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import tiny_hf  # noqa: E402

from qtensorformer import ModelConfig, QTensorFormer  # noqa: E402
from qtensorformer.compress import (  # noqa: E402
    CalibrationConfig,
    CompressionReport,
    SVDConfig,
    SVDLLMConfig,
    TTAwareConfig,
    TTConfig,
    calibration_ids,
    compress_,
    compress_matrix,
    find_blocks,
    load_compressed,
    method_config,
    read_manifest,
    save_compressed,
)
from qtensorformer.compress.calibrate import (  # noqa: E402
    StatsCollector,
    block_output,
    capture_block_inputs,
)
from qtensorformer.files import CheckpointError  # noqa: E402
from qtensorformer.nn.replace import replace_modules  # noqa: E402
from qtensorformer.tensor import TTLinear  # noqa: E402
from qtensorformer.tensor.lowrank import LowRankLinear  # noqa: E402

V = 64
QUIET = CalibrationConfig(progress=False)
FULL = 10**6  # a rank above every matrix's: capped to the exact rank


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_llama(dtype=torch.float64) -> nn.Module:
    return tiny_hf.llama(V, bos_token_id=0, eos_token_id=1, tie_word_embeddings=True).to(dtype)


def tiny_gpt2(dtype=torch.float64) -> nn.Module:
    return tiny_hf.gpt2(V, bos_token_id=0, eos_token_id=1).to(dtype)


def tiny_qtf(dtype=torch.float64) -> nn.Module:
    cfg = ModelConfig.dense(vocab_size=V, d_model=32, n_layers=2, n_heads=2)
    return QTensorFormer(cfg).to(dtype).eval()


BUILDERS = {"llama": tiny_llama, "gpt2": tiny_gpt2, "qtf": tiny_qtf}


@torch.no_grad()
def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    out = model(ids)
    return out[0] if isinstance(out, tuple) else out.logits


def ids(n: int = 4, length: int = 16) -> torch.Tensor:
    return torch.randint(0, V, (n, length))


def linear_shapes(model: nn.Module, names) -> dict[str, tuple[int, int]]:
    mods = dict(model.named_modules())
    out = {}
    for name in names:
        w = mods[name].weight
        out[name] = tuple(w.T.shape) if type(mods[name]).__name__ == "Conv1D" else tuple(w.shape)
    return out


# ---------------------------------------------------------------------------- blocks
def test_find_blocks_on_each_architecture_and_generic_fallback():
    assert find_blocks(tiny_llama())[0] == "model.layers"
    assert find_blocks(tiny_gpt2())[0] == "transformer.h"
    assert find_blocks(tiny_qtf())[0] == "blocks"

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.heads = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])  # mixed classes
            self.stack = nn.ModuleList(nn.Linear(4, 4) for _ in range(3))

    assert find_blocks(Net())[0] == "stack"
    with pytest.raises(ValueError, match="no repeated blocks"):
        find_blocks(nn.Linear(3, 3))


# ---------------------------------------------------------------------------- exactness
METHOD_CASES = [
    ("svd", {}),
    ("asvd", {}),
    ("svd-llm", {}),
    ("tt", {"topology": "strict"}),
    ("tt", {"topology": "auto"}),
    ("tt-aware", {"topology": "strict", "sweeps": 1}),
    ("tt-aware", {"topology": "lowrank", "sweeps": 1}),
]


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(("method", "extra"), METHOD_CASES)
def test_full_rank_reproduces_logits_float64(arch, method, extra):
    model = BUILDERS[arch]()
    x = ids(3, 12)
    ref = logits(model, x)
    config = method_config(method, rank=FULL, **extra)
    report = compress_(model, config, calibration=ids(), options=QUIET)
    assert len(report.modules) == (14 if arch == "llama" else 8)
    assert all(isinstance(m, (LowRankLinear, TTLinear)) for m in _compressed(model, report))
    torch.testing.assert_close(logits(model, x), ref, atol=1e-10, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(("method", "extra"), [("svd-llm", {}), ("tt-aware", {"sweeps": 1})])
def test_full_rank_reproduces_logits_float32(arch, method, extra):
    model = BUILDERS[arch](torch.float32)
    x = ids(3, 12)
    ref = logits(model, x)
    compress_(model, method_config(method, rank=FULL, **extra), calibration=ids(), options=QUIET)
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(logits(model, x), ref, atol=1e-5, rtol=0)


def _compressed(model, report):
    mods = dict(model.named_modules())
    return [mods[n] for n in report.modules]


@pytest.mark.parametrize(("method", "extra"), [("tt", {}), ("tt-aware", {"sweeps": 1})])
def test_own_model_full_rank_tensor_trains_reproduce_logits(method, extra):
    model = tiny_qtf()
    x = ids(2, 10)
    ref = logits(model, x)
    config = method_config(method, rank=FULL, topology="strict", **extra)
    report = compress_(model, config, calibration=ids(), options=QUIET)
    assert sorted({n.split(".", 2)[2] for n in report.modules}) == [
        "attn.out",
        "attn.qkv",
        "ffn.w1",
        "ffn.w2",
    ]
    torch.testing.assert_close(logits(model, x), ref, atol=1e-10, rtol=0)


def test_own_model_low_rank_reproduces_logits():
    model = tiny_qtf()
    x = ids(2, 10)
    ref = logits(model, x)
    compress_(model, SVDLLMConfig(rank=FULL), calibration=ids(), options=QUIET)
    torch.testing.assert_close(logits(model, x), ref, atol=1e-10, rtol=0)


# ---------------------------------------------------------------------------- calibration
def test_gram_matrices_are_shared_by_readers_of_one_input_and_exact():
    model = tiny_llama()
    cal = ids(3, 10)
    _, blocks = find_blocks(model)
    inputs = capture_block_inputs(model, blocks[0], cal, batch_size=2)
    assert len(inputs) == 2 and inputs[0].args[0].shape == (2, 10, 32)
    block = blocks[0]
    names = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"]
    names += ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
    mods = {n: block.get_submodule(n) for n in names}
    seen: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    hooks = [
        m.register_forward_pre_hook(lambda mod, a, n=n: seen[n].append(a[0].detach()))
        for n, m in mods.items()
    ]
    with torch.no_grad(), StatsCollector(mods) as col:
        for inp in inputs:
            block_output(block, inp)
            col.end_forward()
    for h in hooks:
        h.remove()
    st = col.stats
    assert st["self_attn.q_proj"] is st["self_attn.k_proj"] is st["self_attn.v_proj"]
    assert st["mlp.gate_proj"] is st["mlp.up_proj"]
    assert st["self_attn.o_proj"] is not st["self_attn.q_proj"]
    assert st["mlp.down_proj"] is not st["mlp.gate_proj"]
    assert st["self_attn.q_proj"].readers == names[:3]
    for n in ("self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"):
        X = torch.cat([x.reshape(-1, x.shape[-1]) for x in seen[n]]).double()
        assert st[n].tokens == 30
        torch.testing.assert_close(st[n].gram, X.T @ X, atol=1e-12, rtol=1e-12)
        torch.testing.assert_close(st[n].abs_mean, X.abs().mean(0), atol=1e-12, rtol=1e-12)


def test_calibration_ids_from_a_file_with_an_encode_tokenizer_and_too_short_text(tmp_path):
    class Chars:
        def encode(self, text):
            return [ord(c) % V for c in text]

    path = tmp_path / "calib.txt"
    path.write_text("the quick brown fox jumps over the lazy dog\n" * 3)
    out = calibration_ids(Chars(), path, n_samples=4, seq_len=20)
    assert out.shape == (4, 20) and out.dtype == torch.long
    assert out.flatten().tolist() == Chars().encode(path.read_text())[:80]
    with pytest.raises(ValueError, match=r"fewer than the 200 asked \(10 samples × 20 tokens\)"):
        calibration_ids(Chars(), path, n_samples=10, seq_len=20)


# ---------------------------------------------------------------------------- aware ordering
def test_block0_activation_errors_svdllm_below_svd_and_tt_aware_below_tt():
    """Block 0 sees the same inputs in every run (later blocks see compressed predecessors),
    so its modules compare method against method."""
    base = tiny_llama()
    cal = ids(8, 16)
    runs = {}
    for name, config in {
        "svd": SVDConfig(ratio=0.5),
        "svd-llm": SVDLLMConfig(ratio=0.5),
        "tt": TTConfig(ratio=0.5, topology="strict"),
        "tt-aware": TTAwareConfig(ratio=0.5, topology="strict", sweeps=2),
    }.items():
        model = tiny_llama()
        model.load_state_dict(base.state_dict())
        runs[name] = compress_(model, config, calibration=cal, options=QUIET).modules
    for mod in (n for n in runs["svd"] if n.startswith("model.layers.0.")):
        e = {k: r[mod].activation_error for k, r in runs.items()}
        assert e["svd-llm"] <= e["svd"] * (1 + 1e-6), (mod, e)
        assert e["tt-aware"] <= e["tt"] * (1 + 1e-6), (mod, e)


# ---------------------------------------------------------------------------- budgets
@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
@pytest.mark.parametrize(
    "config_fn",
    [
        lambda r: SVDConfig(ratio=r),
        lambda r: SVDLLMConfig(ratio=r, allocation="spectrum"),
        lambda r: SVDConfig(ratio=r, allocation="spectrum"),
    ],
    ids=["svd-uniform", "svd-llm-spectrum", "svd-spectrum"],
)
def test_low_rank_params_after_are_the_ratio_within_one_rank_step(ratio, config_fn):
    model = tiny_gpt2()
    config = config_fn(ratio)
    report = compress_(model, config, calibration=ids(), options=QUIET)
    shapes = linear_shapes(tiny_gpt2(), report.modules)
    before = sum(n * m for n, m in shapes.values())
    assert report.selected_before == before
    budget = (1 - ratio) * before
    step = sum(n + m for n, m in shapes.values())
    if config.allocation == "uniform":  # every matrix within its own rank step
        for name, rec in report.modules.items():
            n, m = shapes[name]
            assert (1 - ratio) * n * m - (n + m) < rec.params_after <= (1 - ratio) * n * m
    assert budget - step < report.selected_after <= budget
    assert abs(report.selected_ratio - ratio) < step / before
    dense = sum(p.numel() for p in tiny_gpt2().parameters())
    assert report.model_params_before == dense
    assert dense - report.model_params_after == before - report.selected_after


@pytest.mark.parametrize("method", ["tt", "tt-aware"])
def test_tensor_train_params_stay_within_each_matrix_budget(method):
    model = tiny_llama()
    report = compress_(
        model, method_config(method, ratio=0.4, sweeps=1), calibration=ids(), options=QUIET
    )
    shapes = linear_shapes(tiny_llama(), report.modules)
    for name, rec in report.modules.items():
        n, m = shapes[name]
        assert rec.params_after <= 0.6 * n * m
        assert rec.params_after >= 0.6 * n * m - 2 * (n + m)  # the budget is used
    assert 0.4 <= report.selected_ratio < 0.5


def test_tensor_train_spectrum_allocation_spends_the_global_budget():
    model = tiny_llama()
    config = TTAwareConfig(ratio=0.4, allocation="spectrum", topology="strict", sweeps=1)
    report = compress_(model, config, calibration=ids(), options=QUIET)
    budget = 0.6 * report.selected_before
    assert 0.8 * budget <= report.selected_after <= budget
    assert len({r.params_after / r.params_before for r in report.modules.values()}) > 1


def test_report_names_topologies_and_errors():
    model = tiny_llama()
    cal = ids()
    report = compress_(model, TTAwareConfig(ratio=0.3, sweeps=1), calibration=cal, options=QUIET)
    topo = report.topologies()
    assert set(topo.values()) <= {"lowrank"} | {t for t in topo.values() if t.startswith("tt(")}
    mods = dict(model.named_modules())
    for name, rec in report.modules.items():
        layer = mods[name]
        assert isinstance(layer, LowRankLinear if rec.topology == "lowrank" else TTLinear)
        assert 0 < rec.weight_error < 1 and 0 <= rec.activation_error < rec.weight_error + 1
        assert rec.seconds >= 0 and rec.preconditioner == "cholesky"
        assert rec.params_after == sum(p.numel() for p in layer.parameters()) - rec.bias
    assert report.calibration == {
        "n_samples": 4,
        "seq_len": 16,
        "tokens": 64,
        "holdout": 0,
        "sequential": True,
    }
    assert all(r.heldout_error is None for r in report.modules.values())
    assert 0 < report.model_ratio < report.selected_ratio
    assert CompressionReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    assert "tt-aware" in report.summary()


def test_holdout_measures_every_module_and_chooses_aware_topologies():
    model = tiny_llama()
    opts = CalibrationConfig(holdout=2, progress=False)
    config = TTAwareConfig(ratio=0.4, sweeps=1)
    report = compress_(model, config, calibration=ids(6, 16), options=opts)
    assert report.calibration["holdout"] == 2
    assert all(r.heldout_error is not None and r.heldout_error > 0 for r in report.modules.values())
    with pytest.raises(ValueError, match="leaves none"):
        compress_(tiny_llama(), config, calibration=ids(2, 16), options=opts)


@pytest.mark.parametrize("sequential", [True, False])
def test_sequential_statistics_see_the_compressed_predecessors(sequential):
    """Block 1 alone sees block 0 uncompressed; so does block 1 of a full run when
    ``sequential=False``, and not when True."""
    base, cal = tiny_llama(), ids()
    opts = CalibrationConfig(sequential=sequential, progress=False)
    runs = []
    for flt in (None, lambda m, n: n.startswith("model.layers.1.")):
        model = tiny_llama()
        model.load_state_dict(base.state_dict())
        runs.append(compress_(model, SVDLLMConfig(ratio=0.6), flt, cal, options=opts).modules)
    block1 = list(runs[1])
    same = [runs[0][n].activation_error == runs[1][n].activation_error for n in block1]
    assert all(same) if not sequential else not any(same)


def test_auto_topology_of_aware_trains_is_chosen_on_held_out_data():
    from qtensorformer.compress.calibrate import InputStats
    from qtensorformer.compress.methods import Target
    from qtensorformer.compress.ttfit import activation_objective

    def stats(T):
        X = torch.randn(T, 24, dtype=torch.float64) @ torch.randn(24, 24, dtype=torch.float64)
        return InputStats(X.T @ X, X.abs().sum(0), T)

    W = torch.randn(32, 24, dtype=torch.float64)
    fit, held = stats(30), stats(200)  # few fitted tokens: the in-sample error misleads
    target = Target("w", W, None, torch.float64, torch.device("cpu"), fit, None, 300, held)
    each = {
        t: compress_matrix(TTAwareConfig(topology=t, sweeps=2), target)
        for t in ("strict", "lowrank")
    }
    auto = compress_matrix(TTAwareConfig(topology="auto", sweeps=2), target)
    scores = {t: activation_objective(W, r.W_hat, held.gram) for t, r in each.items()}
    assert auto.topology == each[min(scores, key=scores.get)].topology


# ---------------------------------------------------------------------------- save / load
@pytest.mark.parametrize(
    ("arch", "config"),
    [
        ("llama", TTAwareConfig(ratio=0.4, sweeps=1)),
        ("gpt2", TTConfig(ratio=0.4, topology="strict")),
        ("gpt2", SVDLLMConfig(ratio=0.5)),
        ("qtf", TTAwareConfig(ratio=0.3, sweeps=1)),
    ],
)
def test_save_load_gives_identical_logits(tmp_path, arch, config):
    model = BUILDERS[arch]()
    report = compress_(model, config, calibration=ids(), options=QUIET)
    save_compressed(model, report, tmp_path)
    manifest = read_manifest(tmp_path)
    assert set(manifest["modules"]) == set(report.modules)
    assert manifest["base_config"]["vocab_size"] == V
    fresh = type(model)(type(model.config).from_dict(manifest["base_config"])).double().eval()
    loaded = load_compressed(tmp_path, fresh)
    x = ids(2, 12)
    assert torch.equal(logits(loaded, x), logits(model, x))


@pytest.fixture
def saved(tmp_path):
    model = tiny_gpt2()
    report = compress_(model, SVDConfig(ratio=0.5), options=QUIET)
    save_compressed(model, report, tmp_path)
    return tmp_path


def test_truncated_manifest_is_a_checkpoint_error(saved):
    path = saved / "compressed.json"
    path.write_text(path.read_text()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_compressed(saved, tiny_gpt2())


def test_foreign_manifest_is_a_checkpoint_error(saved):
    (saved / "compressed.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 32}))
    with pytest.raises(CheckpointError, match="foreign"):
        load_compressed(saved, tiny_gpt2())


def test_malformed_module_entry_is_a_checkpoint_error(saved):
    path = saved / "compressed.json"
    manifest = json.loads(path.read_text())
    name = next(iter(manifest["modules"]))
    manifest["modules"][name] = {"type": "LowRankLinear", "rank": 3}
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="malformed"):
        load_compressed(saved, tiny_gpt2())


def test_corrupt_or_truncated_weights_are_a_checkpoint_error(saved):
    weights = saved / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match its manifest"):
        load_compressed(saved, tiny_gpt2())
    weights.write_bytes(bytes(data[: len(data) // 2]))
    with pytest.raises(CheckpointError, match="truncated"):
        load_compressed(saved, tiny_gpt2())


def test_missing_manifest_and_wrong_base_model_are_checkpoint_errors(saved, tmp_path_factory):
    with pytest.raises(CheckpointError, match=r"no compressed\.json"):
        load_compressed(tmp_path_factory.mktemp("empty"), tiny_gpt2())
    with pytest.raises(CheckpointError, match="base model is a LlamaForCausalLM"):
        load_compressed(saved, tiny_llama())
    wider = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(n_embd=48, n_layer=2, n_head=4, vocab_size=V, n_positions=64)
    )
    with pytest.raises(CheckpointError, match="wrong base model"):
        load_compressed(saved, wider)


# ---------------------------------------------------------------------------- input errors
def test_filter_matching_nothing_is_an_error():
    with pytest.raises(ValueError, match=r"selected no nn\.Linear"):
        compress_(tiny_gpt2(), SVDConfig(ratio=0.5), lambda m, n: n == "nothing", options=QUIET)


@pytest.mark.parametrize("ratio", [0, 1, -0.1, 1.5, True])
def test_ratio_outside_unit_interval_is_an_error(ratio):
    with pytest.raises(ValueError, match=r"ratio must lie in \(0, 1\)"):
        SVDLLMConfig(ratio=ratio)


@pytest.mark.parametrize("method", ["asvd", "svd-llm", "tt-aware"])
def test_aware_method_without_calibration_is_an_error(method):
    with pytest.raises(ValueError, match="activation-aware"):
        compress_(tiny_gpt2(), method_config(method, ratio=0.5), options=QUIET)
    with pytest.raises(ValueError, match="needs calibration data"):
        replace_modules(tiny_gpt2(), method_config(method, ratio=0.5))


def test_calibration_shorter_than_asked_is_an_error():
    opts = CalibrationConfig(n_samples=8, seq_len=16, progress=False)
    with pytest.raises(ValueError, match="calibration is too short"):
        compress_(tiny_gpt2(), SVDLLMConfig(ratio=0.5), calibration=ids(4, 16), options=opts)
    with pytest.raises(ValueError, match="calibration is too short"):
        compress_(tiny_gpt2(), SVDLLMConfig(ratio=0.5), calibration=ids(8, 8), options=opts)
    with pytest.raises(ValueError, match="LongTensor of token ids"):
        compress_(tiny_gpt2(), SVDLLMConfig(ratio=0.5), calibration=torch.ones(16))


def test_config_validation_messages():
    with pytest.raises(ValueError, match="topology must be one of"):
        TTConfig(topology="tree")
    with pytest.raises(ValueError, match="allocation must be one of"):
        SVDConfig(allocation="greedy")
    with pytest.raises(ValueError, match="neither"):
        SVDConfig(ratio=None)
    with pytest.raises(ValueError, match="unknown compression method"):
        method_config("pruning")
    with pytest.raises(TypeError, match="compression method config"):
        compress_(tiny_gpt2(), {"ratio": 0.5})


def test_per_layer_ranks_and_data_free_replace_modules():
    model = tiny_gpt2()
    name = "transformer.h.0.mlp.c_fc"
    report = compress_(model, SVDConfig(ratio=0.5, rank={name: 3}), options=QUIET)
    assert report.modules[name].ranks == (3,)
    assert report.modules["transformer.h.1.mlp.c_fc"].ranks == (12,)  # ⌊0.5·32·128/160⌋
    assert report.modules[name].activation_error is None  # no calibration given
    plain = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 16)).double()
    x = torch.randn(5, 16, dtype=torch.float64)
    ref = plain(x)
    assert replace_modules(plain, TTConfig(rank=FULL, topology="strict")) == ["0", "2"]
    torch.testing.assert_close(plain(x), ref, atol=1e-12, rtol=0)


# ---------------------------------------------------------------------------- resume
def test_interrupted_run_resumes_from_the_last_finished_block(tmp_path, monkeypatch):
    from qtensorformer.compress import api

    base, cal, x = tiny_llama(), ids(4, 12), ids(2, 10)
    config = TTAwareConfig(ratio=0.4, sweeps=1)
    whole = tiny_llama()
    whole.load_state_dict(base.state_dict())
    want = compress_(whole, config, calibration=cal, options=QUIET)

    real, calls = api.compress_matrix, []

    def failing(cfg, target):
        if target.name.startswith("model.layers.1."):
            raise KeyboardInterrupt
        calls.append(target.name)
        return real(cfg, target)

    model = tiny_llama()
    model.load_state_dict(base.state_dict())
    monkeypatch.setattr(api, "compress_matrix", failing)
    with pytest.raises(KeyboardInterrupt):
        compress_(model, config, calibration=cal, options=QUIET, resume_dir=tmp_path)
    assert len(calls) == 7  # block 0 finished
    assert json.loads((tmp_path / "progress.json").read_text())["blocks_done"] == 1

    monkeypatch.setattr(api, "compress_matrix", real)
    model = tiny_llama()
    model.load_state_dict(base.state_dict())
    got = compress_(model, config, calibration=cal, options=QUIET, resume_dir=tmp_path)

    def key(report):
        return {
            n: (r.topology, r.ranks, r.params_after, r.weight_error, r.activation_error)
            for n, r in report.modules.items()
        }

    assert key(got) == key(want)
    assert torch.equal(logits(model, x), logits(whole, x))
    assert not list(tmp_path.glob("inputs-*"))  # finished: hidden states dropped

    with pytest.raises(CheckpointError, match="another run"):
        compress_(
            tiny_llama(),
            TTAwareConfig(ratio=0.3, sweeps=1),
            calibration=cal,
            options=QUIET,
            resume_dir=tmp_path,
        )


def test_an_option_of_another_method_is_a_clear_error():
    with pytest.raises(ValueError, match="svd-llm takes no option topology"):
        method_config("svd-llm", ratio=0.2, topology="strict")
