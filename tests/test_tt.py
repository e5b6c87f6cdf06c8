"""TT-SVD, rounding and factorisation against dense references (and tensorly as an oracle)."""

from __future__ import annotations

import math

import pytest
import torch

from qtensorformer.tensor import (
    balanced_factors,
    factorize,
    tt_num_params,
    tt_round,
    tt_svd,
    tt_to_dense,
)

F64 = torch.float64
SHAPES = [((8, 8), (4, 8)), ((4, 4, 4), (2, 8, 4)), ((2, 3, 4, 2), (3, 2, 2, 4))]


def rel_err(a, b):
    return float(torch.linalg.norm(a - b) / torch.linalg.norm(b))


@pytest.mark.parametrize(("out_modes", "in_modes"), SHAPES)
def test_full_rank_is_exact(out_modes, in_modes):
    W = torch.randn(math.prod(out_modes), math.prod(in_modes), dtype=F64)
    tt = tt_svd(W, in_modes=in_modes, out_modes=out_modes)
    torch.testing.assert_close(tt.to_dense(), W, atol=1e-10, rtol=0)
    assert tt.error_bound < 1e-12
    assert [tuple(c.shape[1:3]) for c in tt.cores] == list(zip(out_modes, in_modes, strict=True))


@pytest.mark.parametrize("tol", [0.05, 0.2, 0.5])
@pytest.mark.parametrize(("out_modes", "in_modes"), SHAPES)
def test_tolerance_guarantee_on_random_matrices(out_modes, in_modes, tol):
    W = torch.randn(math.prod(out_modes), math.prod(in_modes), dtype=F64)
    tt = tt_svd(W, in_modes=in_modes, out_modes=out_modes, tol=tol)
    err = rel_err(tt.to_dense(), W)
    assert err <= tol + 1e-12
    assert err <= tt.error_bound + 1e-12  # the bound is a true upper bound
    assert tt.error_bound <= tol + 1e-12


def test_tolerance_on_low_rank_plus_noise_finds_the_low_rank():
    out_modes, in_modes = (8, 8, 8), (8, 8, 4)
    # A TT of ranks (3, 3) plus 1e-3 relative noise.
    cores = [
        torch.randn(1, 8, 8, 3, dtype=F64),
        torch.randn(3, 8, 8, 3, dtype=F64),
        torch.randn(3, 8, 4, 1, dtype=F64),
    ]
    W0 = tt_to_dense(cores)
    W = W0 + 1e-3 * torch.linalg.norm(W0) / math.sqrt(W0.numel()) * torch.randn_like(W0)
    tt = tt_svd(W, in_modes=in_modes, out_modes=out_modes, tol=1e-2)
    assert tt.ranks == (3, 3)
    assert rel_err(tt.to_dense(), W) <= 1e-2
    assert rel_err(tt.to_dense(), W0) <= 2e-3


def test_fixed_rank_and_parameter_budget():
    out_modes, in_modes = (8, 8, 8), (8, 8, 8)
    W = torch.randn(512, 512, dtype=F64)
    tt = tt_svd(W, in_modes=in_modes, out_modes=out_modes, rank=5)
    assert tt.ranks == (5, 5)
    tt = tt_svd(W, in_modes=in_modes, out_modes=out_modes, rank=(3, 7))
    assert tt.ranks == (3, 7) and tt.num_params == tt_num_params(
        in_modes=in_modes, out_modes=out_modes, ranks=(3, 7)
    )
    budget = 20_000
    tt = tt_svd(W, in_modes=in_modes, out_modes=out_modes, max_params=budget)
    assert tt.num_params <= budget
    r = tt.ranks[0]
    assert (
        tt_num_params(in_modes=in_modes, out_modes=out_modes, ranks=(r + 1, r + 1)) > budget
    )  # largest cap that fits
    # more parameters, less error
    small = tt_svd(W, in_modes=in_modes, out_modes=out_modes, max_params=5_000)
    assert rel_err(small.to_dense(), W) > rel_err(tt.to_dense(), W)


def test_spectra_and_entropies():
    W = torch.randn(64, 64, dtype=F64)
    tt = tt_svd(W, in_modes=(8, 8), out_modes=(8, 8))
    assert len(tt.singular_values) == 1
    p = tt.spectra[0]
    torch.testing.assert_close(p.sum(), torch.tensor(1.0, dtype=F64))
    assert tt.entropies[0] == pytest.approx(float(-(p * p.log()).sum()))
    # A rank-1 (product) matrix has zero bond entropy.
    a, b = torch.randn(8, 8, dtype=F64), torch.randn(8, 8, dtype=F64)
    W1 = torch.einsum("ij,kl->ikjl", a, b).reshape(64, 64)  # kron(a, b)
    tt1 = tt_svd(W1, in_modes=(8, 8), out_modes=(8, 8), tol=1e-12)
    assert tt1.ranks == (1,)
    assert tt1.entropies[0] == pytest.approx(0.0, abs=1e-10)


@pytest.mark.parametrize(("out_modes", "in_modes"), SHAPES)
def test_matches_tensorly_tensor_train_matrix(out_modes, in_modes):
    tl = pytest.importorskip("tensorly")
    from tensorly.decomposition import tensor_train_matrix
    from tensorly.tt_matrix import tt_matrix_to_tensor

    tl.set_backend("pytorch")
    try:
        N, M = math.prod(out_modes), math.prod(in_modes)
        W = torch.randn(N, M, dtype=F64)
        K = len(out_modes)
        for r in (1, 2, 3):
            ours = tt_svd(W, in_modes=in_modes, out_modes=out_modes, rank=r)
            ref = tensor_train_matrix(
                W.reshape(*out_modes, *in_modes), rank=[1] + [r] * (K - 1) + [1]
            )
            ref_dense = tt_matrix_to_tensor(ref).reshape(N, M)
            torch.testing.assert_close(ours.to_dense(), ref_dense, atol=1e-8, rtol=0)
    finally:
        tl.set_backend("numpy")


def test_tt_round_tolerance_and_rank():
    out_modes, in_modes = (4, 4, 4, 4), (4, 4, 4, 4)
    W = torch.randn(256, 256, dtype=F64)
    exact = tt_svd(W, in_modes=in_modes, out_modes=out_modes)
    for tol in (0.1, 0.4):
        rounded = tt_round(exact.cores, tol=tol)
        assert rel_err(rounded.to_dense(), W) <= tol + 1e-10
    capped = tt_round(exact.cores, rank=3)
    assert max(capped.ranks) <= 3
    # A + A as a train with doubled bonds rounds back to A's ranks, matrix unchanged.
    small = tt_svd(W, in_modes=in_modes, out_modes=out_modes, rank=2).cores
    blocks = _block_diag_train(small, small)
    torch.testing.assert_close(tt_to_dense(blocks), 2 * tt_to_dense(small))
    r = tt_round(blocks, tol=1e-10)
    assert r.ranks == tuple(c.shape[-1] for c in small[:-1])
    torch.testing.assert_close(r.to_dense(), 2 * tt_to_dense(small), atol=1e-9, rtol=0)


def _block_diag_train(a, b):
    """TT of A + B from two trains (bond dimensions add)."""
    K = len(a)
    out = []
    for k, (x, y) in enumerate(zip(a, b, strict=True)):
        if k == 0:
            out.append(torch.cat([x, y], 3))
        elif k == K - 1:
            out.append(torch.cat([x, y], 0))
        else:
            r0, n, m, r1 = x.shape
            s0, _, _, s1 = y.shape
            c = torch.zeros(r0 + s0, n, m, r1 + s1, dtype=x.dtype)
            c[:r0, :, :, :r1] = x
            c[r0:, :, :, r1:] = y
            out.append(c)
    return out


def test_factorize():
    assert factorize(512, 3).modes == (8, 8, 8)
    assert factorize(2048, 4).modes == (8, 8, 8, 4)
    assert balanced_factors(33278, 3) == (2377, 7, 2)
    m = factorize(33278, 3)
    assert math.prod(m.modes) == m.padded >= 33278 and m.padding == m.padded - 33278
    assert max(m.modes) / min(m.modes) <= 2  # padding buys a balanced split
    assert m.modes == (40, 32, 26) and m.padding == 2  # the least padding that does
    assert m.padding <= 0.02 * 33278
    assert factorize(33278, 3, max_pad=0).modes == (2377, 7, 2)


def test_bad_input_is_a_clear_error():
    W = torch.randn(64, 32, dtype=F64)
    with pytest.raises(ValueError, match=r"in_modes=.*multiply to 30"):
        tt_svd(W, in_modes=(5, 6), out_modes=(8, 8))
    with pytest.raises(ValueError, match="out_modes"):
        tt_svd(W, in_modes=(4, 8), out_modes=(8, 7))
    with pytest.raises(ValueError, match="same number of modes"):
        tt_svd(W, in_modes=(4, 8), out_modes=(4, 4, 4))
    with pytest.raises(ValueError, match="ranks must be ints >= 1"):
        tt_svd(W, in_modes=(4, 8), out_modes=(8, 8), rank=0)
    with pytest.raises(ValueError, match="at most one"):
        tt_svd(W, in_modes=(4, 8), out_modes=(8, 8), rank=2, tol=0.1)
    with pytest.raises(ValueError, match="max_params"):
        tt_svd(W, in_modes=(4, 8), out_modes=(8, 8), max_params=10)
    with pytest.raises(ValueError, match="2-D"):
        tt_svd(torch.randn(4, 4, 4), in_modes=(4,), out_modes=(4,))
