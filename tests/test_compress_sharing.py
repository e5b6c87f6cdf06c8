"""Basis Sharing (``basis-sharing``): the shared-basis layer, exactness at full rank, one
parameter per group, the whitened optimum, the group-of-one fallback to SVD-LLM, budgets,
save/load, the CLI option and input errors. Tiny models built from configs: no downloads."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

import tiny_hf  # noqa: E402
from test_compress_pipeline import llama_folder, texts  # noqa: E402, F401 (fixtures)
from typer.testing import CliRunner  # noqa: E402

from qtensorformer.cli import app  # noqa: E402
from qtensorformer.compress import (  # noqa: E402
    BasisSharingConfig,
    CalibrationConfig,
    SVDLLMConfig,
    compress_,
    load_causal_lm,
    load_compressed,
    method_config,
    read_manifest,
    save_compressed,
)
from qtensorformer.compress.budget import shared_rank, uniform_rank  # noqa: E402
from qtensorformer.compress.linalg import (  # noqa: E402
    Identity,
    shared_basis_factors,
    whitening,
)
from qtensorformer.files import CheckpointError  # noqa: E402
from qtensorformer.nn.params import decayed_parameters  # noqa: E402
from qtensorformer.nn.replace import replace_modules  # noqa: E402
from qtensorformer.tensor.lowrank import LowRankLinear, SharedBasisLinear  # noqa: E402

V = 64
F64 = torch.float64
QUIET = CalibrationConfig(progress=False)
FULL = 10**6  # a rank above every group's: capped to the exact rank

pytestmark = pytest.mark.usefixtures("one_thread")


def llama(layers: int = 4, dtype=F64, **overrides) -> nn.Module:
    model = tiny_hf.llama(V, num_hidden_layers=layers, tie_word_embeddings=True, **overrides)
    return model.to(dtype)


def gpt2(layers: int = 4, dtype=F64) -> nn.Module:
    return tiny_hf.gpt2(V, n_layer=layers).to(dtype)


def copy_of(model: nn.Module, build) -> nn.Module:
    twin = build()
    twin.load_state_dict(model.state_dict())
    return twin


@torch.no_grad()
def logits(model: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return model(ids).logits


def ids(n: int = 4, length: int = 16) -> torch.Tensor:
    return torch.randint(0, V, (n, length))


def shared_sets(model: nn.Module) -> dict[int, list[str]]:
    """The names of the SharedBasisLinear modules by their basis's identity."""
    sets: dict[int, list[str]] = {}
    for name, module in model.named_modules():
        if isinstance(module, SharedBasisLinear):
            sets.setdefault(id(module.basis), []).append(name)
    return sets


def dense_shapes(model: nn.Module, names) -> dict[str, tuple[int, int]]:
    mods = dict(model.named_modules())
    out = {}
    for name in names:
        w = mods[name].weight
        out[name] = tuple(w.T.shape) if type(mods[name]).__name__ == "Conv1D" else tuple(w.shape)
    return out


# ---------------------------------------------------------------------------- the layer
def test_shared_basis_layers_hold_one_parameter_and_match_the_dense_product():
    B = torch.randn(5, 16, dtype=F64)
    A1, A2 = torch.randn(24, 5, dtype=F64), torch.randn(8, 5, dtype=F64)
    bias = torch.randn(24, dtype=F64)
    one, two = SharedBasisLinear.group(B, [A1, A2], [bias, None])
    assert one.basis is two.basis and one.coefficient is not two.coefficient
    x = torch.randn(3, 7, 16, dtype=F64)
    torch.testing.assert_close(one(x), F.linear(x, A1 @ B, bias), atol=1e-12, rtol=0)
    torch.testing.assert_close(two(x), F.linear(x, A2 @ B), atol=1e-12, rtol=0)
    torch.testing.assert_close(one.to_dense(), A1 @ B, atol=1e-13, rtol=0)
    group = nn.ModuleList([one, two])
    assert sum(p.numel() for p in group.parameters()) == 5 * 16 + 5 * (24 + 8) + 24
    assert len(decayed_parameters(group)) == 3  # the basis once, two coefficient matrices
    assert one.flops(10) == 2 * 10 * 5 * (16 + 24) + 10 * 24
    with pytest.raises(ValueError, match="no nested truncation"):
        one.flops(10, rank=2)
    assert "shared basis" in one.extra_repr()
    (one(x).sum() + two(x).sum()).backward()
    g1 = (A1.sum(0)[:, None] * x.reshape(-1, 16).sum(0)[None]).to(F64)
    g2 = (A2.sum(0)[:, None] * x.reshape(-1, 16).sum(0)[None]).to(F64)
    torch.testing.assert_close(one.basis.grad, g1 + g2, atol=1e-10, rtol=0)  # both layers'
    with pytest.raises(ValueError, match="coefficients must be"):
        SharedBasisLinear.group(B, [torch.randn(4, 3)], [None])


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize(
    ("build", "dtype", "atol"),
    [(llama, F64, 1e-10), (gpt2, F64, 1e-10), (llama, torch.float32, 1e-5)],
    ids=["llama-float64", "gpt2-float64", "llama-float32"],
)
def test_full_rank_reproduces_the_logits(build, dtype, atol):
    model = build(dtype=dtype)
    x = ids(3, 12)
    ref = logits(model, x)
    report = compress_(model, BasisSharingConfig(rank=FULL), calibration=ids(), options=QUIET)
    assert shared_sets(model), "nothing was shared"
    assert all(p.dtype == dtype for p in model.parameters())
    assert all(r.method == "basis-sharing" for r in report.modules.values())
    torch.testing.assert_close(logits(model, x), ref, atol=atol, rtol=0)


@pytest.mark.parametrize(
    ("build", "shared"),
    [
        (  # full attention: the official Llama-2 configs
            lambda: llama(2, num_key_value_heads=4),
            {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"}
            | {"mlp.gate_proj", "mlp.up_proj"},
        ),
        (  # grouped-query attention: k, v per layer (the official Mistral config)
            lambda: llama(2),
            {"self_attn.q_proj", "mlp.gate_proj", "mlp.up_proj"},
        ),
        (lambda: gpt2(2), {"attn.c_attn", "attn.c_proj", "mlp.c_fc"}),
    ],
    ids=["llama-mha", "llama-gqa", "gpt2"],
)
def test_default_shared_types_follow_the_official_configs(build, shared):
    model = build()
    report = compress_(model, BasisSharingConfig(ratio=0.3), calibration=ids(), options=QUIET)
    mods = dict(model.named_modules())
    got = {n.split(".", 3)[3] for n, r in report.modules.items() if r.topology.startswith("sh")}
    assert got == shared
    for name, rec in report.modules.items():
        local = name.split(".", 3)[3]
        layer = mods[name]
        assert isinstance(layer, SharedBasisLinear if local in shared else LowRankLinear)
        want = "shared-basis(group of 2)" if local in shared else "lowrank"
        assert rec.topology == want and rec.preconditioner == "cholesky"


# ---------------------------------------------------------------------------- counts
def test_one_basis_parameter_per_group_and_counts_match_the_formula():
    model, ratio = llama(5), 0.3  # groups (0, 1), (2, 3) and a last group of one, (4,)
    dense = sum(p.numel() for p in model.parameters())
    report = compress_(model, BasisSharingConfig(ratio=ratio), calibration=ids(), options=QUIET)
    sets = shared_sets(model)
    assert len(sets) == 2 * 3  # two groups × q, gate, up
    mods = dict(model.named_modules())
    bases = set()
    for names in sets.values():
        first = mods[names[0]]
        assert [n.split(".")[2] for n in names] in (["0", "1"], ["2", "3"])
        assert all(mods[n].basis is first.basis for n in names)
        bases.add(id(first.basis))
        n, m = first.out_features, first.in_features
        k = first.rank
        assert k == shared_rank(n, m, 2, ratio) == int((1 - ratio) * 2 * n * m) // (m + 2 * n)
        held = k * m + 2 * k * n
        assert sum(report.modules[x].params_after for x in names) == held
        assert sum(mods[x].num_params() for x in names) == held + k * m  # each sees the basis
    assert len(bases) == len(sets)
    for name, rec in report.modules.items():
        if name.startswith("model.layers.4."):  # the last group: SVD-LLM per layer
            n, m = dense_shapes(llama(5), [name])[name]
            assert rec.topology == "lowrank" and rec.ranks == (uniform_rank(n, m, ratio),)
    after = sum(p.numel() for p in model.parameters())
    assert report.model_params_after == after
    assert dense - after == report.selected_before - report.selected_after
    records = sum(r.params_after + r.bias for r in report.modules.values())
    compressed = {id(p): p.numel() for n in report.modules for p in mods[n].parameters()}
    assert records == sum(compressed.values())


@pytest.mark.parametrize("ratio", [0.2, 0.4, 0.6])
def test_params_after_are_the_ratio_within_one_rank_step_per_group(ratio):
    model = llama(5)
    shapes = dense_shapes(model, [n for n, m in model.named_modules() if isinstance(m, nn.Linear)])
    report = compress_(model, BasisSharingConfig(ratio=ratio), calibration=ids(), options=QUIET)
    steps, budget = 0, 0.0
    counted = set()
    for names in shared_sets(model).values():
        n, m = shapes[names[0]]
        g = len(names)
        kept = sum(report.modules[x].params_after for x in names)
        assert (1 - ratio) * g * n * m - (m + g * n) < kept <= (1 - ratio) * g * n * m
        steps += m + g * n
        budget += (1 - ratio) * g * n * m
        counted.update(names)
    for name in report.modules:
        if name not in counted:
            n, m = shapes[name]
            steps += n + m
            budget += (1 - ratio) * n * m
    assert report.selected_before == sum(shapes[n][0] * shapes[n][1] for n in report.modules)
    assert budget == pytest.approx((1 - ratio) * report.selected_before)
    assert budget - steps < report.selected_after <= budget


# ---------------------------------------------------------------------------- optimality
def _summed_error(Ws, coefficients, B, G) -> float:
    total = 0.0
    for W, A in zip(Ws, coefficients, strict=True):
        D = W - A @ B
        total += float(((D @ G) * D).sum())
    return total


def _best_coefficients(Ws, B, G):
    """For a fixed basis B: A_i = W_i G Bᵀ (B G Bᵀ)⁻¹ minimises tr((W_i − A_i B) G (…)ᵀ)."""
    inner = B @ G @ B.T
    return [torch.linalg.solve(inner, (W @ G @ B.T).T).T for W in Ws]


def test_whitened_shared_basis_is_the_optimum_when_every_layer_sees_the_same_inputs():
    g, n, m, k, T = 3, 12, 10, 4, 60
    Ws = [torch.randn(n, m, dtype=F64) for _ in range(g)]
    mix = torch.randn(m, m, dtype=F64) * torch.logspace(0, -1.5, m, dtype=F64)
    X = torch.randn(T, m, dtype=F64) @ mix  # correlated, unequally scaled features
    G = X.T @ X
    coefficients, B = shared_basis_factors(Ws, whitening(g * G, damp=0.0), k)
    assert B.shape == (k, m) and [tuple(A.shape) for A in coefficients] == [(n, k)] * g
    best = _summed_error(Ws, coefficients, B, G)
    # the unwhitened shared basis (plain SVD of the stack), with its best coefficients
    _, B_plain = shared_basis_factors(Ws, Identity(), k)
    plain = _summed_error(Ws, _best_coefficients(Ws, B_plain, G), B_plain, G)
    assert best < plain
    # any other basis, with its best coefficients
    for _ in range(20):
        B_other = torch.randn(k, m, dtype=F64)
        other = _summed_error(Ws, _best_coefficients(Ws, B_other, G), B_other, G)
        assert best <= other * (1 + 1e-10)
    # and small moves around the optimum only increase it
    for _ in range(5):
        B_near = B + 1e-3 * torch.randn(k, m, dtype=F64) * B.abs().mean()
        near = _summed_error(Ws, _best_coefficients(Ws, B_near, G), B_near, G)
        assert best <= near * (1 + 1e-12)


def test_a_group_is_whitened_by_the_sum_of_its_members_gram_matrices():
    """compress_shared factors with S Sᵀ = G_1 + G_2 (not one member's G), and each record's
    activation error is measured on that member's own inputs."""
    from qtensorformer.compress.calibrate import InputStats
    from qtensorformer.compress.linalg import activation_error
    from qtensorformer.compress.sharing import compress_shared

    m, n, k = 10, 12, 3
    model = nn.Sequential(nn.Linear(m, n).double(), nn.Linear(m, n, bias=False).double())
    Ws = [layer.weight.detach().clone() for layer in model]
    bias = model[0].bias.detach().clone()
    grams = []
    for scale in (torch.logspace(0, -2, m, dtype=F64), torch.logspace(-2, 0, m, dtype=F64)):
        X = torch.randn(40, m, dtype=F64) * scale
        grams.append(X.T @ X)
    stats = {str(i): InputStats(G, torch.zeros(m, dtype=F64), 40) for i, G in enumerate(grams)}
    records = {}
    config = BasisSharingConfig(rank=k, damp=0.0)
    compress_shared(model, dict(model.named_children()), config, stats, {}, records)
    assert model[0].basis is model[1].basis
    want, B = shared_basis_factors(Ws, whitening(grams[0] + grams[1], damp=0.0), k)
    one, B_one = shared_basis_factors(Ws, whitening(grams[0], damp=0.0), k)
    for i in range(2):
        torch.testing.assert_close(model[i].to_dense(), want[i] @ B, atol=1e-10, rtol=0)
        assert not torch.allclose(model[i].to_dense(), one[i] @ B_one, atol=1e-6)
        own = activation_error(Ws[i], want[i] @ B, grams[i])
        assert records[str(i)].activation_error == pytest.approx(own, rel=1e-9)
    torch.testing.assert_close(model[0].bias, bias)
    assert model[1].bias is None
    assert [r.params_after for r in records.values()] == [k * m // 2 + k * n] * 2


# ---------------------------------------------------------------------------- groups of one
def test_group_size_one_equals_per_layer_svd_llm():
    base, cal, x = llama(3), ids(), ids(2, 10)
    runs, models = {}, {}
    for key, config in {
        "sharing": BasisSharingConfig(ratio=0.4, group_size=1),
        "svd-llm": SVDLLMConfig(ratio=0.4),
    }.items():
        models[key] = copy_of(base, lambda: llama(3))
        runs[key] = compress_(models[key], config, calibration=cal, options=QUIET).modules
    assert not shared_sets(models["sharing"])
    assert list(runs["sharing"]) == list(runs["svd-llm"])
    for name, rec in runs["sharing"].items():
        ref = runs["svd-llm"][name]
        assert (rec.topology, rec.ranks, rec.params_after) == (
            ref.topology,
            ref.ranks,
            ref.params_after,
        )
        assert rec.weight_error == pytest.approx(ref.weight_error, abs=1e-12)
        assert rec.activation_error == pytest.approx(ref.activation_error, abs=1e-12)
    torch.testing.assert_close(
        logits(models["sharing"], x), logits(models["svd-llm"], x), atol=1e-12, rtol=0
    )


def test_last_group_of_one_is_svd_llm_of_that_block():
    """With blocks 0–2 in groups (0, 1), (2) and only block 2 selected, both methods see the
    same (uncompressed) inputs there."""
    base, cal = llama(3), ids()

    def block2(module, name):
        return name.startswith("model.layers.2.")

    sharing = compress_(
        copy_of(base, lambda: llama(3)), BasisSharingConfig(ratio=0.5), block2, cal, options=QUIET
    )
    svdllm = compress_(
        copy_of(base, lambda: llama(3)), SVDLLMConfig(ratio=0.5), block2, cal, options=QUIET
    )
    assert len(sharing.modules) == 7
    for name, rec in sharing.modules.items():
        ref = svdllm.modules[name]
        assert rec.topology == "lowrank" and rec.ranks == ref.ranks
        assert rec.activation_error == pytest.approx(ref.activation_error, abs=1e-12)


def test_sequential_calibration_feeds_each_group_the_compressed_groups_before_it():
    """Group (2, 3) of a full run sees groups before it compressed; alone it does not."""
    base, cal = llama(4), ids()
    opts = {s: CalibrationConfig(sequential=s, progress=False) for s in (True, False)}

    def late(module, name):
        return name.startswith(("model.layers.2.", "model.layers.3."))

    for sequential, same_expected in ((False, True), (True, False)):
        full = compress_(
            copy_of(base, lambda: llama(4)),
            BasisSharingConfig(ratio=0.5),
            calibration=cal,
            options=opts[sequential],
        ).modules
        alone = compress_(
            copy_of(base, lambda: llama(4)),
            BasisSharingConfig(ratio=0.5),
            late,
            cal,
            options=opts[sequential],
        ).modules
        same = [full[n].activation_error == alone[n].activation_error for n in alone]
        assert all(same) if same_expected else not any(same)


# ---------------------------------------------------------------------------- save / load
@pytest.fixture
def saved(tmp_path):
    model = llama(4)
    report = compress_(model, BasisSharingConfig(ratio=0.4), calibration=ids(), options=QUIET)
    save_compressed(model, report, tmp_path)
    return model, tmp_path


def test_save_load_gives_identical_logits_and_shares_the_basis_again(saved):
    model, folder = saved
    manifest = read_manifest(folder)
    entry = manifest["modules"]["model.layers.2.mlp.up_proj"]
    assert entry["type"] == "SharedBasisLinear"
    assert entry["group"] == ["model.layers.2.mlp.up_proj", "model.layers.3.mlp.up_proj"]
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        stored = [key for key in f.keys() if key.endswith(".basis")]
    assert len(stored) == len(shared_sets(model)) == 6  # each basis once
    fresh = type(model)(type(model.config).from_dict(manifest["base_config"])).double().eval()
    loaded = load_compressed(folder, fresh)
    x = ids(2, 12)
    assert torch.equal(logits(loaded, x), logits(model, x))
    mods = dict(loaded.named_modules())
    assert mods["model.layers.2.mlp.up_proj"].basis is mods["model.layers.3.mlp.up_proj"].basis
    assert mods["model.layers.0.mlp.up_proj"].basis is not mods["model.layers.2.mlp.up_proj"].basis
    assert sum(p.numel() for p in loaded.parameters()) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda g: g[:1], "lists the group"),
        (lambda g: [g[0], "model.layers.9.mlp.up_proj"], "not a SharedBasisLinear entry"),
        (lambda g: [g[0], "model.layers.2.mlp.down_proj"], "not a SharedBasisLinear entry"),
        (lambda g: [g[0], "model.layers.2.mlp.gate_proj"], "lists the group"),
        (lambda g: "model.layers.3.mlp.up_proj", "itself among them"),
        (lambda g: [g[0], g[0]], "distinct"),
        (lambda g: [g[1]], "itself among them"),
    ],
    ids=[
        "one-member",
        "unknown-member",
        "per-layer-member",
        "other-group",
        "not-a-list",
        "twice",
        "without-itself",
    ],
)
def test_a_broken_group_entry_is_a_checkpoint_error(saved, corrupt, message):
    _, folder = saved
    path = folder / "compressed.json"
    manifest = json.loads(path.read_text())
    entry = manifest["modules"]["model.layers.2.mlp.up_proj"]
    entry["group"] = corrupt(entry["group"])
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match=f"model.layers.2.mlp.up_proj.*{message}"):
        load_compressed(folder, llama(4))


def test_saving_part_of_a_group_is_an_error(saved, tmp_path):
    model, _ = saved
    names = [
        n for n, m in model.named_modules() if isinstance(m, (SharedBasisLinear, LowRankLinear))
    ]
    part = [n for n in names if n != "model.layers.3.mlp.up_proj"]
    with pytest.raises(ValueError, match=r"not saved: save the whole group"):
        save_compressed(model, {"modules": part}, tmp_path / "part")
    save_compressed(model, {"modules": names}, tmp_path / "whole")
    loaded = load_compressed(tmp_path / "whole", llama(4))
    x = ids(2, 8)
    assert torch.equal(logits(loaded, x), logits(model, x))


def test_a_group_member_of_another_rank_is_a_checkpoint_error(saved):
    _, folder = saved
    path = folder / "compressed.json"
    manifest = json.loads(path.read_text())
    manifest["modules"]["model.layers.3.mlp.up_proj"]["rank"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="another basis shape"):
        read_manifest(folder)


def test_cli_group_size_compresses_saves_and_loads_back(llama_folder, texts, tmp_path):  # noqa: F811
    calib, _ = texts
    out = tmp_path / "shared"
    args = ["compress", str(llama_folder), "--method", "basis-sharing", "--group-size", "2"]
    args += ["--ratio", "0.4", "--seq-len", "16", "--calib-samples", "4"]
    args += ["--calib-data", str(calib), "--eval-windows", "0", "--out", str(out)]
    r = CliRunner().invoke(app, args)
    assert r.exit_code == 0, r.output
    run = json.loads((out / "compress_run.json").read_text())
    assert run["config"]["group_size"] == 2 and run["report"]["config"]["group_size"] == 2
    loaded = load_causal_lm(out)
    assert shared_sets(loaded.model)
    assert sum(p.numel() for p in loaded.model.parameters()) == run["report"]["model_params_after"]
    bad = CliRunner().invoke(app, ["compress", str(llama_folder), "--group-size", "3"])
    assert bad.exit_code == 2 and "--group-size applies to basis-sharing only" in bad.output


# ---------------------------------------------------------------------------- input errors
@pytest.mark.parametrize("group_size", [0, -1, True, 2.5])
def test_group_size_must_be_a_positive_int(group_size):
    with pytest.raises(ValueError, match="group_size must be an int >= 1"):
        BasisSharingConfig(group_size=group_size)


def test_config_errors_name_the_fix():
    assert method_config("basis-sharing", group_size=3).group_size == 3
    with pytest.raises(ValueError, match=r"uniform' only.*use svd-llm for spectrum"):
        BasisSharingConfig(allocation="spectrum")
    with pytest.raises(ValueError, match="non-empty tuple"):
        BasisSharingConfig(shared=())
    with pytest.raises(ValueError, match="twice"):
        BasisSharingConfig(shared=("q_proj", "q_proj"))
    assert BasisSharingConfig(shared="mlp.up_proj").shared == ("mlp.up_proj",)


def test_missing_calibration_is_the_aware_methods_error():
    with pytest.raises(ValueError, match="activation-aware: pass calibration token ids"):
        compress_(llama(2), BasisSharingConfig(ratio=0.5), options=QUIET)
    with pytest.raises(ValueError, match="needs calibration data"):
        replace_modules(llama(2), BasisSharingConfig(ratio=0.5))


def test_shared_type_matching_nothing_and_other_run_errors(tmp_path):
    with pytest.raises(ValueError, match=r"'attn.qkv' matches none of the selected.*q_proj"):
        compress_(
            llama(2), BasisSharingConfig(shared=("attn.qkv",)), calibration=ids(), options=QUIET
        )
    with pytest.raises(ValueError, match="cannot resume"):
        compress_(
            llama(2), BasisSharingConfig(), calibration=ids(), options=QUIET, resume_dir=tmp_path
        )
    ranks = {"model.layers.0.mlp.up_proj": 3, "model.layers.1.mlp.up_proj": 4}
    with pytest.raises(ValueError, match="same rank"):
        compress_(llama(2), BasisSharingConfig(rank=ranks), calibration=ids(), options=QUIET)


def test_shared_suffixes_choose_the_types():
    model = llama(2)
    config = BasisSharingConfig(ratio=0.4, shared=("down_proj", "self_attn.o_proj"))
    report = compress_(model, config, calibration=ids(), options=QUIET)
    shared = {n.split(".", 3)[3] for n, r in report.modules.items() if r.topology != "lowrank"}
    assert shared == {"mlp.down_proj", "self_attn.o_proj"}
