"""QTensorFormer: seed API, causality, gradients, routing, per-token ranks, pillars, errors."""

from __future__ import annotations

import pytest
import torch

from qtensorformer import ModelConfig, QTensorFormer
from qtensorformer.nn import FeedForward, QuantumKernelAttention, SelectiveQuantumRouter
from qtensorformer.nn.attention import CausalSelfAttention

ALL_ON = dict(
    use_tt_ffn=True,
    use_tt_attention=True,
    use_tt_embedding=True,
    use_quantum_encoder=True,
    use_quantum_attention=True,
    use_selective_routing=True,
    use_adaptive_rank=True,
    use_qkan=True,
)


def tiny(**kw) -> ModelConfig:
    base = dict(
        vocab_size=64,
        d_model=32,
        n_layers=2,
        n_heads=2,
        max_seq_len=24,
        tt_rank=6,
        n_qubits=4,
        dropout=0.0,
    )
    return ModelConfig(**{**base, **kw})


def test_seed_snippet_runs_as_written():
    config = ModelConfig(
        vocab_size=10000,
        hidden_dim=128,
        n_layers=3,
        tt_rank=4,
        n_qubits=4,
        use_quantum_attention=True,
        use_adaptive_rank=True,
    )
    model = QTensorFormer(config)
    input_ids = torch.randint(0, 10000, (2, 32))
    labels = input_ids.clone()
    logits, loss, stats = model(input_ids, labels=labels)
    assert logits.shape == (2, 32, 10000)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert len(stats.layers) == 3 and stats.tokens == 64
    for layer in stats.layers:
        assert layer.entropy.shape == (2, 32) and layer.rank.shape == (2, 32)
        assert int(layer.rank.min()) >= config.r_min and int(layer.rank.max()) <= config.r_max
    assert model(input_ids)[1] is None


@pytest.mark.parametrize("source", ["quantum", "attention"])
def test_causality_with_every_pillar_on(source):
    model = QTensorFormer(tiny(**ALL_ON, entropy_source=source)).double().eval()
    ids = torch.randint(0, 64, (2, 20))
    t = int(torch.randint(1, 19, ()))
    changed = ids.clone()
    changed[:, t] = (ids[:, t] + 1 + torch.randint(0, 62, (2,))) % 64
    with torch.no_grad():
        a, _, sa = model(ids)
        b, _, _ = model(changed)
    torch.testing.assert_close(a[:, :t], b[:, :t], rtol=0, atol=1e-10)
    assert (a[:, t:] - b[:, t:]).abs().max() > 1e-6  # the change is visible from t on
    assert sa.routed_fraction is not None


def test_gradients_reach_every_pillar():
    model = QTensorFormer(tiny(**ALL_ON)).train()
    ids = torch.randint(0, 64, (4, 20))
    _, loss, _ = model(ids, labels=ids)
    loss.backward()
    blk = model.blocks[0]
    named = {
        "router threshold θ": blk.attn.router.threshold,
        "rank α": blk.rank.log_alpha,
        "encoder circuit": blk.encoder.circuit.weights,
        "encoder projection (α path)": blk.encoder.proj_in.weight,
        "kernel-attention circuit": blk.attn.quantum.weights,
        "TT-FFN core": blk.ffn.w1.cores[1],
        "TT attention core": blk.attn.qkv.cores[0],
        "TT embedding core": model.embed.cores[0],
        "DARUAN θ": blk.ffn.act.theta,
    }
    for name, p in named.items():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().max() > 0, name


def test_router_fraction_moves_toward_target():
    torch.manual_seed(0)
    cfg = tiny(
        use_quantum_attention=True,
        use_selective_routing=True,
        route_fraction=0.7,
        route_loss_weight=5.0,
    )
    model = QTensorFormer(cfg).train()
    ids = torch.randint(0, 64, (8, 20))
    model(ids)  # the first batch sets θ at the 0.3 quantile: 70% of tokens routed
    for blk in model.blocks:  # then ask for 20%
        blk.attn.router.route_fraction = 0.2
    frac0 = model(ids)[2].routed_fraction
    opt = torch.optim.Adam(model.parameters(), lr=2e-2)
    for _ in range(40):
        _, loss, _ = model(ids, labels=ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
    frac = model(ids)[2].routed_fraction
    assert frac0 > 0.6
    assert abs(frac - 0.2) < 0.5 * abs(frac0 - 0.2), (frac0, frac)


def test_router_initialises_threshold_at_target_quantile():
    router = SelectiveQuantumRouter(route_fraction=0.25).train()
    h = torch.rand(8, 50)
    out = router(h)
    assert bool(router.initialized)
    assert abs(out.routed.float().mean().item() - 0.25) < 0.02
    theta = router.threshold.detach().clone()
    router(torch.rand(8, 50) + 5)  # no re-initialisation afterwards
    assert torch.equal(router.threshold.detach(), theta)


def test_router_straight_through_gradient():
    router = SelectiveQuantumRouter(route_fraction=0.3, tau=0.2)
    router.initialized.fill_(True)
    h = torch.rand(40, dtype=torch.float64, requires_grad=True)
    out = router(h)
    assert torch.equal(out.gate.detach(), out.routed.double())
    out.gate.sum().backward()
    s = torch.sigmoid((h.detach() - router.threshold.detach().double()) / 0.2)
    torch.testing.assert_close(h.grad, s * (1 - s) / 0.2)


@pytest.mark.parametrize("activation", ["gelu", "daruan"])
def test_grouped_per_token_ranks_equal_token_by_token(activation):
    ffn = FeedForward(24, 96, tt_rank=7, activation=activation).double()
    x = torch.randn(3, 11, 24, dtype=torch.float64)
    ranks = torch.randint(1, 8, (3, 11))
    y = ffn(x, ranks).y
    ref = torch.stack(
        [
            torch.stack([ffn(x[i, j : j + 1], int(ranks[i, j])).y[0] for j in range(11)])
            for i in range(3)
        ]
    )
    torch.testing.assert_close(y, ref, rtol=1e-12, atol=1e-12)
    # rank r equals the TT layers truncated to r, run densely
    r = 3
    W1, W2 = ffn.w1.to_dense(r), ffn.w2.to_dense(r)
    dense = ffn.act(x @ W1.T + ffn.w1.bias) @ W2.T + ffn.w2.bias
    torch.testing.assert_close(ffn(x, torch.full((3, 11), r)).y, dense, rtol=1e-10, atol=1e-12)


def test_rank_straight_through_is_finite_difference():
    ffn = FeedForward(16, 64, tt_rank=5).double()
    x = torch.randn(2, 7, 16, dtype=torch.float64)
    ranks = torch.randint(2, 6, (2, 7))
    soft = ranks.double().requires_grad_(True)
    y = ffn(x, ranks, soft).y
    torch.testing.assert_close(y, ffn(x, ranks).y)  # value unchanged
    g = torch.randn_like(y)
    (y * g).sum().backward()
    expected = torch.stack(
        [
            torch.stack(
                [
                    (
                        g[i, j]
                        * (
                            ffn(x[i, j : j + 1], int(ranks[i, j])).y[0]
                            - ffn(x[i, j : j + 1], int(ranks[i, j]) - 1).y[0]
                        )
                    ).sum()
                    for j in range(7)
                ]
            )
            for i in range(2)
        ]
    ).detach()
    torch.testing.assert_close(soft.grad, expected)


def _routed_attention(norm="softmax"):
    q = QuantumKernelAttention(2, 8, n_qubits=3, n_layers=2, norm=norm)
    return CausalSelfAttention(16, 2, None, q, SelectiveQuantumRouter(0.3)).double().eval()


@pytest.mark.parametrize("norm", ["softmax", "rowsum"])
def test_gathered_routing_equals_full_paths(norm):
    """Routed rows equal the all-quantum attention at those rows, the others equal softmax
    attention: gathering changes nothing but the cost."""
    att = _routed_attention(norm)
    att.router.initialized.fill_(True)
    x = torch.randn(3, 9, 16, dtype=torch.float64)
    hardness = torch.rand(3, 9, dtype=torch.float64)
    out = att(x, hardness)
    used = out.circuits
    routed = out.route.routed
    assert 0 < routed.sum() < routed.numel()
    quantum, router = att.quantum, att.router
    att.router = None
    all_quantum = att(x).y
    att.quantum = None
    classical = att(x).y
    att.quantum, att.router = quantum, router
    expected = torch.where(routed[..., None], all_quantum, classical)
    torch.testing.assert_close(out.y, expected, rtol=1e-10, atol=1e-12)
    circuits = 2 * (int(routed.sum(1).max()) + 9) * 3  # heads × (padded queries + keys) × b
    assert used == circuits


def test_kernel_attention_weights():
    att = QuantumKernelAttention(2, 8, n_qubits=3, norm="rowsum").double()
    q, k = (
        torch.randn(2, 2, 6, 8, dtype=torch.float64),
        torch.randn(2, 2, 6, 8, dtype=torch.float64),
    )
    K = att.kernel(q, k)
    assert K.min() >= 0 and K.max() <= 1 + 1e-12
    # overlap of explicitly prepared states
    sq, sk = att.states(q, att.q_proj, att.q_bias), att.states(k, att.k_proj, att.k_bias)
    torch.testing.assert_close(sq.norm(dim=-1), torch.ones(2, 2, 6, dtype=torch.float64))
    torch.testing.assert_close(K, (sq @ sk.mT).square())
    v = torch.eye(6, dtype=torch.float64).expand(2, 2, 6, 6)  # output = attention matrix
    causal = torch.ones(6, 6, dtype=torch.bool).tril()[None, None]
    A = att(q, k, v, causal).y
    torch.testing.assert_close(A.sum(-1), torch.ones(2, 2, 6, dtype=torch.float64))
    assert A.masked_select(~causal).abs().max() == 0
    torch.testing.assert_close(A, (K * causal) / (K * causal).sum(-1, keepdim=True))


def test_kernel_attention_gradcheck():
    att = QuantumKernelAttention(1, 3, n_qubits=2, n_layers=1, norm="softmax").double()
    causal = torch.ones(4, 4, dtype=torch.bool).tril()[None, None]
    q, k, v = (torch.randn(1, 1, 4, 3, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda a, b, c: att(a, b, c, causal).y, (q, k, v))


PILLAR_SETS = {
    "dense": {},
    "tt_ffn": {"use_tt_ffn": True},
    "tt_attention": {"use_tt_attention": True},
    "tt_embedding": {"use_tt_embedding": True},
    "quantum_encoder": {"use_quantum_encoder": True},
    "quantum_attention": {"use_quantum_attention": True},
    "selective_routing": {
        "use_quantum_attention": True,
        "use_selective_routing": True,
        "use_quantum_encoder": True,
    },
    "adaptive_rank": {"use_tt_ffn": True, "use_adaptive_rank": True, "entropy_source": "attention"},
    "qkan": {"use_qkan": True},
    "all": ALL_ON,
}


@pytest.mark.parametrize("pillars", sorted(PILLAR_SETS))
def test_each_pillar_trains_and_overfits_a_tiny_batch(pillars):
    torch.manual_seed(1234)
    cfg = tiny(**{**ModelConfig.dense().pillars, **PILLAR_SETS[pillars]}, tt_rank=8)
    model = QTensorFormer(cfg).train()
    ids = torch.randint(0, 64, (4, 16))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = None
    for _ in range(80):
        _, loss, stats = model(ids, labels=ids)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else stats.lm_loss.item()
    final = model(ids, labels=ids)[2].lm_loss.item()
    assert final < 0.5 * first, (pillars, first, final)


def test_bad_inputs_have_clear_errors():
    model = QTensorFormer(tiny())
    with pytest.raises(ValueError, match=r"must lie in \[0, 64\)"):
        model(torch.tensor([[1, 64]]))
    with pytest.raises(ValueError, match=r"must lie in \[0, 64\)"):
        model(torch.tensor([[-1, 3]]))
    with pytest.raises(ValueError, match="exceeds max_seq_len=24"):
        model(torch.randint(0, 64, (1, 25)))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.rand(1, 5))
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        model(torch.randint(0, 64, (5,)))
    with pytest.raises(ValueError, match="labels must have the shape"):
        model(torch.randint(0, 64, (2, 5)), labels=torch.randint(0, 64, (2, 4)))
    with pytest.raises(TypeError, match="needs a ModelConfig"):
        QTensorFormer({"vocab_size": 10})


def test_labels_ignore_index_and_shift():
    model = QTensorFormer(tiny(use_quantum_encoder=False)).eval()
    ids = torch.randint(0, 64, (2, 10))
    logits, loss, _ = model(ids, labels=ids)
    ref = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 64), ids[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, ref)
    masked = ids.clone()
    masked[:, 5:] = -100
    _, loss2, _ = model(ids, labels=masked)
    ref2 = torch.nn.functional.cross_entropy(logits[:, :4].reshape(-1, 64), ids[:, 1:5].reshape(-1))
    torch.testing.assert_close(loss2, ref2)


def test_generate():
    model = QTensorFormer(tiny(**ALL_ON)).train()
    ids = torch.randint(0, 64, (2, 5))
    out = model.generate(ids, max_new_tokens=30, temperature=0)  # crosses max_seq_len=24
    assert out.shape == (2, 35) and torch.equal(out[:, :5], ids)
    assert model.training  # mode restored
    assert torch.equal(model.generate(ids, 6, temperature=0), out[:, :11])
    assert torch.equal(model.generate(ids, 6, temperature=1.0, top_k=1), out[:, :11])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.testing.assert_close(
        model.generate(ids, 8, temperature=0.8, top_k=5, generator=g1),
        model.generate(ids, 8, temperature=0.8, top_k=5, generator=g2),
    )
    with pytest.raises(ValueError, match="top_k"):
        model.generate(ids, 3, top_k=0)


def test_stats_count_circuits_and_flops():
    cfg = tiny(use_quantum_attention=True, use_quantum_encoder=True)
    model = QTensorFormer(cfg).eval()
    b, n = 3, 10
    _, _, stats = model(torch.randint(0, 64, (b, n)))
    # encoder: one circuit per token; attention without routing: heads × (queries + keys)
    assert stats.circuits == cfg.n_layers * (b * n + cfg.n_heads * b * 2 * n)
    assert stats.total_flops > 0 and set(stats.flops) >= {"attention", "ffn", "lm_head"}


def test_dense_flops_close_to_torch_flop_counter():
    from torch.utils.flop_counter import FlopCounterMode

    cfg = ModelConfig.dense(vocab_size=500, d_model=64, n_layers=2, n_heads=4, max_seq_len=64)
    model = QTensorFormer(cfg).eval()
    ids = torch.randint(0, 500, (2, 64))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        _, _, stats = model(ids)
    counted = counter.get_total_flops()  # the GEMMs; torch does not count CPU SDPA kernels
    b, n, h, e = 2, 64, 4, 16
    counted += cfg.n_layers * 4 * b * h * n * n * e  # q kᵀ and p v of causal SDPA (full n×n)
    ours = stats.total_flops  # also counts biases, softmax and GELU (estimates)
    assert counted <= ours <= 1.1 * counted, (counted, ours)


def test_router_penalty_holds_the_hard_fraction_at_its_target():
    """Scores packed in a narrow band: the soft gate's mean and the routed fraction differ
    widely there, and the penalty must steer the routed (hard) fraction."""
    from qtensorformer.nn import SelectiveQuantumRouter

    h = 0.5 + 0.1 * torch.rand(4096)
    router = SelectiveQuantumRouter(route_fraction=0.2, tau=0.1, init_threshold=0.45)
    router.initialized.fill_(True)  # start from θ below every score: all routed
    opt = torch.optim.Adam(router.parameters(), lr=2e-3)
    for _ in range(300):
        out = router(h)
        opt.zero_grad()
        out.aux_loss.backward()
        opt.step()
    frac = float(router(h).routed.float().mean())
    assert abs(frac - 0.2) < 0.05, frac


def test_rank_step_rounds_to_a_grid_and_scales_the_finite_difference():
    from qtensorformer.nn import RankScheduler

    sched = RankScheduler(r_min=2, r_max=20, alpha=7.0, step=4)
    s = torch.rand(3, 50) * 3
    r = sched(s).ranks
    assert set(r.unique().tolist()) <= {2, 6, 10, 14, 18, 20}
    want = torch.clamp(2 + 4 * torch.round(torch.clamp(7.0 * s, max=18) / 4), max=20)
    assert torch.equal(r, want.long())
    with pytest.raises(ValueError, match="step"):
        RankScheduler(2, 8, 1.0, step=0)
    # the straight-through slope: (y(r) − y(r − s)) / s per token
    ffn = FeedForward(16, 64, tt_rank=9).double()
    x = torch.randn(2, 5, 16, dtype=torch.float64)
    ranks = torch.tensor([[3, 6, 9, 6, 3], [9, 9, 3, 6, 6]])
    soft = ranks.double().requires_grad_(True)
    y = ffn(x, ranks, soft, rank_step=3).y
    g = torch.randn_like(y)
    (y * g).sum().backward()
    for i in range(2):
        for j in range(5):
            rk, xt = int(ranks[i, j]), x[i, j : j + 1]
            slope = (
                (ffn(xt, rk).y[0] - ffn(xt, rk - 3).y[0]) / 3
                if rk > 3
                else (ffn(xt, rk).y[0] - ffn(xt, 1).y[0]) / (rk - 1)
            )
            torch.testing.assert_close(soft.grad[i, j], (g[i, j] * slope).sum())
    # the model passes its step through and the config validates it
    cfg = ModelConfig(
        vocab_size=50,
        d_model=16,
        n_heads=2,
        n_layers=1,
        tt_rank=8,
        use_adaptive_rank=True,
        rank_step=3,
        entropy_source="attention",
        use_quantum_encoder=False,
    )
    _, _, st = QTensorFormer(cfg)(torch.randint(0, 50, (2, 12)))
    assert set(st.layers[0].rank.unique().tolist()) <= {2, 5, 8}
    with pytest.raises(ValueError, match="rank_step"):
        ModelConfig(vocab_size=50, d_model=16, n_heads=2, n_layers=1, rank_step=0)


def test_encoder_output_projection_starts_at_the_residual_scale():
    cfg = ModelConfig(vocab_size=50, d_model=64, n_heads=2, n_layers=2, init_std=0.02)
    m = QTensorFormer(cfg)
    for blk in m.blocks:
        w, b = blk.encoder.proj_out.weight, blk.encoder.proj_out.bias
        assert abs(float(w.std()) - 0.02) < 0.006 and float(b.abs().max()) == 0.0
    # so at the start the quantum features are a small addition to the token embeddings
    x = m.embed(torch.randint(0, 50, (2, 16)))
    feats, _ = m.blocks[0].encoder(m.blocks[0].ln_q(x))
    assert float(feats.std()) < 3 * float(x.std())
