"""TTLinear / TTEmbedding: paths agree, nested and per-token ranks, gradients, caching, init."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qtensorformer.tensor import NestedRankSampler, TTEmbedding, TTLinear

F64 = torch.float64
LAYERS = [(64, 96, 5, None, None), (48, 32, 4, (4, 3, 4), (2, 4, 4)), (30, 20, 3, None, None)]


def make(d_in, d_out, r, im, om):
    return TTLinear(d_in, d_out, r, in_modes=im, out_modes=om, dtype=F64)


@pytest.mark.parametrize(("d_in", "d_out", "r", "im", "om"), LAYERS)
def test_paths_agree_with_dense_reference(d_in, d_out, r, im, om):
    layer = make(d_in, d_out, r, im, om)
    x = torch.randn(7, 3, d_in, dtype=F64)
    ref = F.linear(x, layer.to_dense(), layer.bias)
    for path in ("dense", "tt"):
        layer.path = path
        torch.testing.assert_close(layer(x), ref, atol=1e-12, rtol=0)
        for rank in (1, 2, r):
            torch.testing.assert_close(
                layer(x, rank=rank),
                F.linear(x, layer.to_dense(rank), layer.bias),
                atol=1e-12,
                rtol=0,
            )


def test_factorised_path_on_skewed_and_single_modes():
    for im, om in (((2, 16), (16, 2)), ((16, 2), (2, 16)), ((2, 2, 2, 4), (4, 2, 2, 2))):
        layer = TTLinear(32, 32, 4, in_modes=im, out_modes=om, dtype=F64)
        layer.path = "tt"
        x = torch.randn(5, 32, dtype=F64)
        torch.testing.assert_close(
            layer(x), F.linear(x, layer.to_dense(), layer.bias), atol=1e-12, rtol=0
        )


def test_factorised_path_chunks_large_intermediates(monkeypatch):
    from qtensorformer.tensor import layers

    layer = make(64, 96, 5, None, None)
    layer.path = "tt"
    x = torch.randn(50, 64, dtype=F64)
    whole = layer(x)
    monkeypatch.setattr(layers, "_MAX_INTERMEDIATE", 1)  # one row per chunk
    torch.testing.assert_close(layer(x), whole, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("d_in", "d_out", "r", "im", "om"), [*LAYERS, (127, 509, 4, None, None)])
def test_blocked_no_grad_path_matches_dense(monkeypatch, d_in, d_out, r, im, om):
    """Without autograd the factorised path runs in row blocks written straight into the
    output (and, per-token, gathered from and scattered to the group's rows); 127→509 pads
    both the input (128) and the output (510)."""
    from qtensorformer.tensor import layers

    monkeypatch.setattr(layers, "_BLOCK_ELEMENTS", 1)
    monkeypatch.setattr(layers, "_MIN_BLOCK_ROWS", 4)  # 4-row blocks, the last one partial
    calls = []
    blocked = layers.TTMatrix._contract_into
    monkeypatch.setattr(
        layers.TTMatrix, "_contract_into", lambda *a, **k: calls.append(1) or blocked(*a, **k)
    )
    layer = make(d_in, d_out, r, im, om).eval()
    layer.path = "tt"
    x = torch.randn(3, 7, d_in, dtype=F64)
    ranks = torch.randint(1, r + 1, (3, 7))
    ranks[0, 0], ranks[0, 1] = 1, r  # at least two groups
    with torch.no_grad():
        ref = F.linear(x, layer.to_dense(), layer.bias)
        torch.testing.assert_close(layer(x), ref, atol=1e-12, rtol=0)
        assert len(calls) == 1
        y = layer(x, rank=ranks)
        assert len(calls) > 1
        for i in range(3):
            for t in range(7):
                w = layer.to_dense(int(ranks[i, t]))
                torch.testing.assert_close(
                    y[i, t], F.linear(x[i, t], w, layer.bias), atol=1e-12, rtol=0
                )
        empty = layer(x[:0], rank=ranks[:0])
    assert empty.shape == (0, 7, d_out)


def test_per_token_ranks_equal_token_by_token():
    layer = make(64, 96, 6, None, None)
    x = torch.randn(4, 9, 64, dtype=F64)
    ranks = torch.randint(1, 7, (4, 9))
    y = layer(x, rank=ranks)
    for path in ("dense", "tt"):
        layer.path = path
        for i in range(4):
            for t in range(9):
                ref = layer(x[i, t : t + 1], rank=int(ranks[i, t]))[0]
                torch.testing.assert_close(y[i, t], ref, atol=1e-12, rtol=0)


def test_auto_path_follows_estimated_costs():
    from qtensorformer.tensor.layers import TT_COSTS

    small = TTLinear(512, 2048, 2)
    c = small.path_costs(4096)
    f = small.path_flops(4096)
    inter = 4096 * small.in_modes[0] * 2 * math.prod(small.out_modes[1:])
    assert c["tt"] == TT_COSTS.flop * f["tt"] + TT_COSTS.element * inter
    assert c["tt"] < c["dense"] and small.choose_path(4096) == "tt"
    big = TTLinear(512, 2048, 64)
    cb = big.path_costs(4096)
    assert cb["tt"] > cb["dense"] and big.choose_path(4096) == "dense"
    # 128→512 at rank 2: a third of the FLOPs, but an intermediate as large as the output
    # (measured slower than dense, benchmarks/bench_tt.py): the element cost keeps it dense
    tiny = TTLinear(128, 512, 2)
    ft = tiny.path_flops(4096)
    assert TT_COSTS.flop * ft["tt"] < ft["dense"] and tiny.choose_path(4096) == "dense"
    # In eval mode a cached W removes the materialisation cost from the dense path.
    big.eval()
    with torch.no_grad():
        big(torch.randn(2, 512))
        assert big.path_flops(4096)["dense"] == 2 * 4096 * 512 * 2048
    # Without autograd the factorised path runs in cache-sized blocks: FLOPs alone, at
    # TT_COSTS.blocked_flop, which sends 128→512 at rank 2 (measured faster there) to it.
    tiny.eval()
    with torch.no_grad():
        c = tiny.path_costs(4096)
        assert c["tt"] == TT_COSTS.blocked_flop * tiny.path_flops(4096)["tt"]
        assert tiny.choose_path(4096) == "tt"
        assert big.choose_path(4096) == "dense"
    assert tiny.path_costs(4096, graph=False)["tt"] == c["tt"]
    assert tiny.choose_path(4096, graph=True) == "dense"


@pytest.mark.parametrize("path", ["dense", "tt"])
def test_gradcheck(path):
    layer = TTLinear(12, 8, 3, in_modes=(3, 4), out_modes=(2, 4), dtype=F64)
    layer.path = path
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
    x = torch.randn(3, 12, dtype=F64, requires_grad=True)
    ranks = torch.tensor([1, 3, 2])

    def f(x, *ps):
        p = dict(zip(names, ps, strict=True))
        full = torch.func.functional_call(layer, p, (x,))
        per_token = torch.func.functional_call(layer, p, (x,), {"rank": ranks})
        return full, per_token

    assert torch.autograd.gradcheck(f, (x, *params))


def test_gradcheck_padded_modes_per_token_ranks():
    # modes multiply past both dims: the factorised path slices its output before the
    # (in-place) bias add; per-token groups are scattered back into one output
    layer = TTLinear(5, 7, 3, in_modes=(2, 3), out_modes=(2, 4), dtype=F64)
    layer.path = "tt"
    names = [n for n, _ in layer.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in layer.named_parameters()]
    x = torch.randn(4, 5, dtype=F64, requires_grad=True)
    ranks = torch.tensor([2, 1, 3, 2])

    def f(x, *ps):
        p = dict(zip(names, ps, strict=True))
        return torch.func.functional_call(layer, p, (x,), {"rank": ranks})

    assert torch.autograd.gradcheck(f, (x, *params))
    ref = torch.stack([layer(x[i : i + 1], rank=int(ranks[i]))[0] for i in range(4)])
    torch.testing.assert_close(layer(x, rank=ranks), ref, atol=1e-12, rtol=0)


def test_state_dict_round_trip():
    a = make(64, 96, 5, None, None)
    b = make(64, 96, 5, None, None)
    x = torch.randn(4, 64, dtype=F64)
    assert not torch.allclose(a(x), b(x))
    b.load_state_dict(a.state_dict())
    torch.testing.assert_close(b(x), a(x), atol=0, rtol=0)


def test_eval_cache_is_never_stale():
    layer = TTLinear(64, 96, 8)
    layer.path = "dense"
    x = torch.randn(16, 64)
    layer.eval()
    with torch.no_grad():
        y0 = layer(x)
        assert layer.cached(layer.max_ranks)
        torch.testing.assert_close(layer(x), y0)
    # An optimizer step changes the cores in place.
    layer.train()
    opt = torch.optim.SGD(layer.parameters(), lr=0.5)
    layer(x).square().mean().backward()
    opt.step()
    layer.eval()
    with torch.no_grad():
        y1 = layer(x)
        assert not torch.allclose(y1, y0)
        torch.testing.assert_close(y1, F.linear(x, layer.to_dense(), layer.bias))
    # load_state_dict copies into the same Parameters.
    other = TTLinear(64, 96, 8)
    layer.load_state_dict(other.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(layer(x), F.linear(x, other.to_dense(), other.bias))
    # Each nested rank has its own cached weight; none is served for another rank.
    with torch.no_grad():
        torch.testing.assert_close(layer(x, rank=2), F.linear(x, layer.to_dense(2), layer.bias))
        assert layer.cached(layer.ranks_at(2)) and layer.cached(layer.max_ranks)
        ranks = torch.tensor([2, 8] * 8)
        y = layer(x, rank=ranks)
        torch.testing.assert_close(y[0], F.linear(x[0], layer.to_dense(2), layer.bias))
        torch.testing.assert_close(y[1], F.linear(x[1], layer.to_dense(), layer.bias))


def test_from_linear_exact_and_tolerance():
    lin = nn.Linear(64, 96).double()
    exact = TTLinear.from_linear(lin)
    x = torch.randn(5, 64, dtype=F64)
    torch.testing.assert_close(exact(x), lin(x), atol=1e-10, rtol=0)
    torch.testing.assert_close(exact.to_dense(), lin.weight, atol=1e-10, rtol=0)
    approx = TTLinear.from_linear(lin, tol=0.3)
    err = torch.linalg.norm(approx.to_dense() - lin.weight) / torch.linalg.norm(lin.weight)
    assert err <= 0.3 and approx.num_params() < exact.num_params()
    budget = TTLinear.from_linear(lin, max_params=2000)
    assert budget.num_params() <= 2000
    # Padded dimensions (a prime width) still reconstruct exactly.
    lin = nn.Linear(61, 40).double()
    padded = TTLinear.from_linear(lin)
    torch.testing.assert_close(padded(x[:, :61]), lin(x[:, :61]), atol=1e-10, rtol=0)


def test_random_init_matches_linear_variance():
    layer = TTLinear(512, 512, 16)
    w = layer.to_dense().detach()
    target = 1.0 / (3 * 512)  # variance of nn.Linear's default U(-1/sqrt(d), 1/sqrt(d))
    assert 0.7 * target < float(w.var()) < 1.3 * target


def test_embedding_lookup_and_tied_projection():
    emb = TTEmbedding(1000, 24, 6, dtype=F64)
    table = emb.to_dense()
    assert table.shape == (1000, 24)
    ids = torch.randint(0, 1000, (3, 7))
    torch.testing.assert_close(emb(ids), table[ids], atol=1e-12, rtol=0)
    torch.testing.assert_close(emb(ids, rank=2), emb.to_dense(2)[ids], atol=1e-12, rtol=0)
    h = torch.randn(3, 7, 24, dtype=F64)
    for path in ("dense", "tt"):
        emb.path = path
        torch.testing.assert_close(emb.project(h), h @ table.T, atol=1e-12, rtol=0)


def test_embedding_gradients_reach_only_used_slices():
    emb = TTEmbedding(64, 8, 3, vocab_modes=(8, 8), dim_modes=(2, 4), dtype=F64)
    ids = torch.tensor([3, 17, 17])
    ref_table = emb.to_dense()
    emb(ids).sum().backward()
    g_lookup = [c.grad.clone() for c in emb.cores]
    emb.zero_grad()
    ref_table = emb.to_dense()
    ref_table[ids].sum().backward()
    for a, c in zip(g_lookup, emb.cores, strict=True):
        torch.testing.assert_close(a, c.grad, atol=1e-12, rtol=0)


def test_nested_rank_training_keeps_truncations_good():
    d = 32
    x = torch.randn(512, d)
    with torch.no_grad():
        y = nn.Linear(d, d, bias=False)(x)

    init_seed = int(torch.randint(0, 2**30, ()))

    def train(sample: bool) -> TTLinear:
        g = torch.Generator().manual_seed(1)
        with torch.random.fork_rng():  # the same initial cores for both: only sampling differs
            torch.manual_seed(init_seed)
            layer = TTLinear(d, d, 8, in_modes=(4, 8), out_modes=(8, 4))
        opt = torch.optim.Adam(layer.parameters(), lr=0.02)
        sampler = NestedRankSampler(1, 8, seed=int(torch.randint(0, 2**30, (), generator=g)))
        for _ in range(300):
            r = sampler() if sample else None
            loss = (layer(x, rank=r) - y).square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return layer

    plain, nested = train(False), train(True)
    with torch.no_grad():
        for r in (1, 2):
            lp = (plain(x, rank=r) - y).square().mean()
            ln = (nested(x, rank=r) - y).square().mean()
            assert ln < lp, (r, float(ln), float(lp))


def test_bad_input_is_a_clear_error():
    with pytest.raises(ValueError, match="rank must be an int >= 1"):
        TTLinear(16, 16, 0)
    with pytest.raises(ValueError, match=r"in_modes=.*multiply to 12"):
        TTLinear(16, 16, 2, in_modes=(3, 4))
    layer = TTLinear(16, 16, 2)
    with pytest.raises(ValueError, match="in_features=16"):
        layer(torch.randn(3, 15))
    with pytest.raises(ValueError, match="rank must be an int >= 1"):
        layer(torch.randn(3, 16), rank=0)
    with pytest.raises(ValueError, match="per-token ranks"):
        layer(torch.randn(3, 16), rank=torch.ones(4, dtype=torch.long))
    with pytest.raises(ValueError, match="per-token ranks must be >= 1"):
        layer(torch.randn(3, 16), rank=torch.tensor([2, 0, 1]))
    # no tokens at all: an empty output, not an error
    empty = layer(torch.randn(0, 16), rank=torch.ones(0, dtype=torch.long))
    assert empty.shape == (0, 16)
    emb = TTEmbedding(100, 8, 2)
    with pytest.raises(ValueError, match=r"token ids must lie in \[0, 100\)"):
        emb(torch.tensor([100]))
