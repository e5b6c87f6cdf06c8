"""Trainer: schedule, exact resume, divergence handling, limits, checkpoints."""

from __future__ import annotations

import itertools
import json
import math
import types

import pytest
import torch

from qtensorformer import ModelConfig, QTensorFormer
from qtensorformer.data import WordVocab, synthetic_corpus
from qtensorformer.io import CheckpointError
from qtensorformer.train import (
    TrainConfig,
    Trainer,
    latest_checkpoint,
    load_trainer_state,
    lr_factor,
)
from qtensorformer.train import trainer as trainer_module


@pytest.fixture(scope="module")
def data():
    c = synthetic_corpus(400, 60, 60, seed=5)
    v = WordVocab.build(c.train)
    return v, {s: v.encode_lines(c.split(s)) for s in ("train", "valid", "test")}


def _model(vocab, **kw):
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=vocab.vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=2,
        max_seq_len=32,
        tt_rank=4,
        dropout=0.1,
        **kw,
    )
    return QTensorFormer(cfg)


def _cfg(**kw):
    base = dict(
        batch_size=4,
        seq_len=32,
        max_steps=8,
        eval_every=4,
        warmup_steps=2,
        eval_max_tokens=200,
        progress=False,
        seed=3,
        log_every=2,
    )
    return TrainConfig(**{**base, **kw})


def test_lr_schedule():
    f = [lr_factor(s, 10, 100, 0.1) for s in range(101)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[100] == pytest.approx(0.1) and all(a >= b for a, b in itertools.pairwise(f[10:]))


@pytest.mark.parametrize(
    "pillars",
    [{}, {"use_quantum_attention": True, "use_selective_routing": True, "use_adaptive_rank": True}],
)
def test_resume_gives_the_same_losses(tmp_path, data, pillars):
    vocab, ids = data
    full = Trainer(
        _model(vocab, **pillars),
        ids["train"],
        ids["valid"],
        _cfg(),
        tmp_path / "a",
        vocab,
        quiet=True,
    ).fit()
    # interrupted after step 4 (a checkpoint is written there), then resumed
    interrupted = Trainer(
        _model(vocab, **pillars),
        ids["train"],
        ids["valid"],
        _cfg(),
        tmp_path / "b",
        vocab,
        quiet=True,
    )
    first_res = _run_until(interrupted, 4)
    resumed = Trainer(
        _model(vocab, **pillars),
        ids["train"],
        ids["valid"],
        _cfg(),
        tmp_path / "b",
        vocab,
        quiet=True,
    ).fit(resume=True)
    assert first_res.steps == 4 and resumed.steps == 8
    assert first_res.losses + resumed.losses == full.losses
    assert resumed.valid.nll == full.valid.nll


def test_checkpoint_every_steps_writes_between_evaluations_and_resumes_exactly(tmp_path, data):
    vocab, ids = data

    def trainer(out):
        cfg = _cfg(eval_every=100, checkpoint_every_steps=3, keep_last=10)
        return Trainer(_model(vocab), ids["train"], ids["valid"], cfg, out, vocab, quiet=True)

    full = trainer(tmp_path / "a").fit()
    steps = sorted(p.name for p in (tmp_path / "a" / "checkpoints").glob("step-*"))
    assert steps == ["step-0000003", "step-0000006", "step-0000008"]  # every 3 and the end
    first = _run_until(trainer(tmp_path / "b"), 6)  # a crash after the step-6 checkpoint
    resumed = trainer(tmp_path / "b").fit(resume=True)
    assert first.steps == 6 and resumed.steps == 8
    assert first.losses + resumed.losses == full.losses


def test_checkpoint_every_minutes(tmp_path, data, monkeypatch):
    vocab, ids = data
    import qtensorformer.train.trainer as tr

    clock = iter(itertools.count(0.0, 25.0))  # every reading of the clock: 25 s later
    monkeypatch.setattr(tr.time, "perf_counter", lambda: next(clock))
    cfg = _cfg(eval_every=100, checkpoint_every_minutes=1.0, keep_last=10)
    Trainer(_model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    steps = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert len(steps) >= 3 and steps[-1] == "step-0000008"  # some between, and the last


@pytest.mark.parametrize("field", ["checkpoint_every_steps", "checkpoint_every_minutes"])
def test_bad_checkpoint_interval(field):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: 0})


def _run_until(trainer, steps):
    """Run ``trainer`` but stop after ``steps`` steps, as a crash would (keeping the schedule
    of the full run)."""
    import qtensorformer.train.trainer as tr

    orig = tr.save_checkpoint

    def save_then_crash(run_dir, step, *a, **k):
        out = orig(run_dir, step, *a, **k)
        if step >= steps:
            raise KeyboardInterrupt
        return out

    tr.save_checkpoint = save_then_crash
    try:
        trainer.fit()
    except KeyboardInterrupt:
        pass
    finally:
        tr.save_checkpoint = orig
    st = load_trainer_state(latest_checkpoint(trainer.run_dir))
    return types.SimpleNamespace(steps=st["state"]["step"], losses=trainer.losses_so_far)


def test_divergence_stops_and_keeps_last_good_checkpoint(tmp_path, data, monkeypatch):
    vocab, ids = data
    model = _model(vocab)
    trainer = Trainer(
        model, ids["train"], ids["valid"], _cfg(max_steps=12), tmp_path, vocab, quiet=True
    )
    calls = {"n": 0}
    orig = model.forward

    def poisoned(*a, **k):
        logits, loss, stats = orig(*a, **k)
        calls["n"] += 1 if model.training else 0
        if model.training and calls["n"] == 6:
            loss = loss * float("nan")
        return logits, loss, stats

    monkeypatch.setattr(model, "forward", poisoned)
    res = trainer.fit()
    assert res.status == "diverged" and res.steps == 5
    assert "step 6" in res.message and "lower learning rate" in res.message
    assert res.last_checkpoint is not None and res.last_checkpoint.name == "step-0000004"
    assert latest_checkpoint(tmp_path) == res.last_checkpoint


def test_limits_checkpoints_and_logs(tmp_path, data):
    vocab, ids = data
    cfg = _cfg(max_steps=None, max_tokens=10 * 4 * 31, eval_every=3, keep_last=2)
    res = Trainer(
        _model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, ids["test"], quiet=True
    ).fit()
    assert res.steps == 10 and res.tokens == 10 * 4 * 31
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert kept == ["step-0000009", "step-0000010"]
    assert not list((tmp_path / "checkpoints").glob(".tmp*"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["test_ppl"] == pytest.approx(res.test.ppl)
    assert math.isfinite(summary["test_ppl"]) and "protocol" in summary
    events = [json.loads(x)["event"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert events[0] == "start" and events[-1] == "end" and "eval" in events
    back = QTensorFormer.from_pretrained(tmp_path / "best")
    assert back.config.vocab_size == vocab.vocab_size


def test_final_eval_max_tokens_caps_the_final_evaluation(tmp_path, data):
    """The final evaluation scores every token of valid and test by default, and the first
    final_eval_max_tokens of each when asked (the same numbers as evaluate() on that slice)."""
    from qtensorformer.train import evaluate

    vocab, ids = data
    full = Trainer(
        _model(vocab),
        ids["train"],
        ids["valid"],
        _cfg(),
        tmp_path / "full",
        vocab,
        ids["test"],
        quiet=True,
    ).fit()
    assert full.valid.tokens == ids["valid"].numel() - 1
    cap = 100
    cfg = _cfg(final_eval_max_tokens=cap)
    cut = Trainer(
        _model(vocab),
        ids["train"],
        ids["valid"],
        cfg,
        tmp_path / "cut",
        vocab,
        ids["test"],
        quiet=True,
    ).fit()
    assert cut.valid.tokens <= cap and cut.test.tokens <= cap < ids["test"].numel() - 1
    last = QTensorFormer.from_pretrained(tmp_path / "cut" / "checkpoints" / "step-0000008")
    again = evaluate(last, ids["test"], 32, 32, cap)
    assert cut.test.nll == pytest.approx(again.nll, rel=1e-6)
    assert full.test.nll != pytest.approx(cut.test.nll)
    with pytest.raises(ValueError, match="final_eval_max_tokens"):
        _cfg(final_eval_max_tokens=0)


def test_early_stopping(tmp_path, data, monkeypatch):
    from qtensorformer.train import EvalResult

    vocab, ids = data
    cfg = _cfg(max_steps=40, eval_every=2, patience=3)
    trainer = Trainer(_model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True)
    evals = iter([5.0, 4.0, 4.5, 4.2, 4.1, 3.0, 3.0])  # best at the 2nd, then 3 worse ones
    monkeypatch.setattr(trainer, "_eval", lambda *a: EvalResult(next(evals) * 100, 100))
    res = trainer.fit()
    assert res.status == "early_stopped" and res.steps == 10
    assert res.best_valid_ppl == pytest.approx(math.exp(4.0))


def test_time_limit(tmp_path, data):
    vocab, ids = data
    cfg = _cfg(max_steps=10_000, max_minutes=0.002, eval_every=10_000)
    res = Trainer(_model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    assert res.steps < 10_000 and res.last_checkpoint is not None
    if res.status == "completed":  # a fast machine finishes the schedule sized to the budget
        recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
        assert next(r for r in recs if r["event"] == "schedule")["steps"] == res.steps
    else:
        assert res.status == "time_limit" and "max_minutes" in res.message


def test_resume_errors(tmp_path, data):
    vocab, ids = data
    t = Trainer(_model(vocab), ids["train"], ids["valid"], _cfg(), tmp_path, vocab, quiet=True)
    with pytest.raises(CheckpointError, match="nothing to resume"):
        t.fit(resume=True)
    Trainer(
        _model(vocab),
        ids["train"],
        ids["valid"],
        _cfg(max_steps=4),
        tmp_path / "r",
        vocab,
        quiet=True,
    ).fit()
    other = _model(vocab, use_qkan=True)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        Trainer(other, ids["train"], ids["valid"], _cfg(), tmp_path / "r", vocab, quiet=True).fit(
            resume=True
        )
    ck = latest_checkpoint(tmp_path / "r")
    (ck / "trainer_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="corrupt"):
        Trainer(
            _model(vocab), ids["train"], ids["valid"], _cfg(), tmp_path / "r", vocab, quiet=True
        ).fit(resume=True)


def test_bad_train_config():
    with pytest.raises(ValueError, match="seq_len"):
        TrainConfig(seq_len=1)
    with pytest.raises(ValueError, match="amp"):
        TrainConfig(amp="fp8")
    with pytest.raises(ValueError, match="unknown field"):
        TrainConfig.from_dict({"batchsize": 3})


def test_pareto_front_is_the_non_dominated_set(tmp_path):
    from qtensorformer.train.pareto import ParetoPoint, ParetoTracker, dominates

    t = ParetoTracker()
    pts = [
        ParetoPoint(
            i,
            float(torch.rand(()) * 100),
            int(torch.randint(1, 5, ())),
            float(torch.rand(())),
            float(torch.rand(())),
        )
        for i in range(40)
    ]
    for p in pts:
        t.add(p)
    brute = [p for p in pts if not any(dominates(q, p) for q in pts)]
    assert sorted(p.step for p in t.front) == sorted(p.step for p in brute)
    t.save(tmp_path)
    saved = json.loads((tmp_path / "pareto.json").read_text())
    assert len(saved["points"]) == 40 and len(saved["front"]) == len(brute)


def test_evaluations_log_pareto_points(tmp_path, data):
    vocab, ids = data
    Trainer(_model(vocab), ids["train"], ids["valid"], _cfg(), tmp_path, vocab, quiet=True).fit()
    evals = [
        r
        for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
        if r["event"] == "eval"
    ]
    assert all(r["latency_ms"] > 0 and r["flops_per_token"] > 0 for r in evals)
    assert (tmp_path / "pareto.json").is_file()


def test_latency_budget_adjusts_router_and_rank(tmp_path, data):
    vocab, ids = data
    model = _model(
        vocab, use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True
    )
    alpha0 = model.blocks[0].rank.alpha
    cfg = _cfg(max_latency_ms=1e-6)  # impossible: every evaluation is over budget
    Trainer(model, ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    actions = [
        r
        for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
        if r["event"] == "budget"
    ]
    assert len(actions) == 4  # two evaluations × (router, rank)
    assert model.blocks[0].attn.router.route_fraction == pytest.approx(0.2 * 0.8**2)
    assert model.blocks[0].rank.alpha < alpha0
    back = QTensorFormer.from_pretrained(latest_checkpoint(tmp_path))
    assert back.blocks[0].attn.router.route_fraction == pytest.approx(0.2 * 0.8**2)


def _events(run_dir, name):
    recs = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [r for r in recs if r["event"] == name]


def test_an_unreachable_budget_is_reported_once(tmp_path, data):
    """A limit below the model's floor (no routing, minimum ranks) is named once, with the
    floor it would need; the ordinary adjustments go on."""
    vocab, ids = data
    model = _model(
        vocab, use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True
    )
    cfg = _cfg(max_latency_ms=1e-6)
    Trainer(model, ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    (w,) = _events(tmp_path, "budget_unreachable")
    assert w["metric"] == "latency_ms" and w["floor"] > w["limit"] == 1e-6
    assert f"at least {w['floor']:.4g}" in w["message"]
    assert len(_events(tmp_path, "budget")) == 4


def test_the_floor_routes_nothing_at_minimum_ranks_and_is_undone(data):
    """Under floor(): no token routed, every rank r_min, fewer FLOPs (circuits included);
    the knobs come back exactly; a limit between the floor and today's cost is reachable."""
    from qtensorformer.energy import model_flops
    from qtensorformer.train.budget import BudgetController

    vocab, _ = data
    model = _model(
        vocab, use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True
    ).eval()
    router, sched = model.blocks[0].attn.router, model.blocks[0].rank
    with torch.no_grad():
        router.threshold.fill_(-1.0)  # every token routed today
    theta, log_alpha = float(router.threshold.detach()), float(sched.log_alpha.detach())
    score = torch.rand(2, 9) + 0.5
    ctl = BudgetController(model, {"energy_uj": 1.0})
    now = model_flops(model, seq_len=16)
    with ctl.floor():
        assert not router(score).routed.any()
        assert bool((sched(score * 10).ranks == sched.r_min).all())
        low = model_flops(model, seq_len=16)
    assert float(router.threshold.detach()) == theta
    assert float(sched.log_alpha.detach()) == log_alpha
    assert low.total < now.total and low.kernel_pairs == 0 < now.kernel_pairs
    assert ctl.unreachable({"energy_uj": 0.5}) == []
    (w,) = ctl.unreachable({"energy_uj": 2.0, "latency_ms": 9.0})  # latency: no limit
    assert w["metric"] == "energy_uj" and "at least 2" in w["message"]


def test_check_floor_measures_once_at_the_floor_and_remembers_what_is_out_of_reach(data):
    """check_floor calls the measure once, with the knobs at the floor, keeps the limits it
    misses out of reach(), and skips a model without knobs."""
    from qtensorformer.train.budget import BudgetController

    vocab, _ = data
    model = _model(vocab, use_adaptive_rank=True)
    ctl = BudgetController(model, {"energy_uj": 1.0, "latency_ms": 5.0})
    seen = []

    def measure():
        seen.append(float(model.blocks[0].rank.log_alpha.detach()))
        return {"energy_uj": 3.0, "latency_ms": 4.0}

    assert ctl.reachable("energy_uj") and ctl.reachable("latency_ms")
    (w,) = ctl.check_floor(measure)
    assert w["metric"] == "energy_uj" and w["floor"] == 3.0
    assert seen == [-math.inf]  # measured once, at the floor
    assert math.isfinite(float(model.blocks[0].rank.log_alpha.detach()))  # restored
    assert not ctl.reachable("energy_uj") and ctl.reachable("latency_ms")
    assert ctl.check_floor(measure) == [] and len(seen) == 1  # not measured again
    assert not ctl.reachable("tokens")  # no such limit
    dense = BudgetController(_model(vocab), {"energy_uj": 1.0})
    assert dense.check_floor(measure) == [] and len(seen) == 1 and not dense.reachable("energy_uj")


def test_a_reachable_energy_budget_is_met_at_the_first_evaluation(tmp_path, data):
    """Energy estimates are deterministic, so the controller keeps stepping within one
    evaluation until the estimate is under a limit that the floor allows."""
    from qtensorformer.energy import EnergyEstimator
    from qtensorformer.train.budget import BudgetController

    vocab, ids = data
    model = _model(
        vocab, use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True
    )
    est = EnergyEstimator("gpu_a100")
    now = est(model, 32)
    with BudgetController(model, {}).floor():
        low = est(model, 32)
    limit = low + 0.3 * (now - low)
    cfg = _cfg(max_energy_uj=limit, energy_hardware="gpu_a100", max_steps=4)
    Trainer(model, ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    assert not _events(tmp_path, "budget_unreachable")
    settled = [a for a in _events(tmp_path, "budget") if "more step" in a["action"]]
    assert settled and all(a["value"] <= limit for a in settled)
    assert settled[0]["value"] < _events(tmp_path, "eval")[0]["energy_uj"]


def test_budget_without_knob(tmp_path, data):
    vocab, ids = data
    cfg = _cfg(max_latency_ms=1e-6)
    Trainer(_model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    actions = [
        r
        for r in map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines())
        if r["event"] == "budget"
    ]
    assert len(actions) == 1 and actions[0]["action"].startswith("none")


def test_energy_budget_uses_the_estimator_and_lowers_energy(tmp_path, data):
    from qtensorformer.energy import EnergyEstimator, model_flops

    vocab, ids = data
    model = _model(
        vocab, use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True
    )
    cfg = _cfg(max_energy_uj=1e-3, energy_hardware="gpu_a100")  # every evaluation over budget
    Trainer(model, ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    recs = list(map(json.loads, (tmp_path / "metrics.jsonl").read_text().splitlines()))
    evals = [r for r in recs if r["event"] == "eval"]
    actions = [r for r in recs if r["event"] == "budget"]
    assert all(r["energy_uj"] > 0 for r in evals)
    assert actions and all(a["metric"] == "energy_uj" for a in actions)
    # the logged number is the estimator's, on the profile the config names
    est = EnergyEstimator("gpu_a100").estimate(model_flops(model, cfg.seq_len)).energy_uj
    assert est == pytest.approx(evals[-1]["energy_uj"], rel=0.5)
    pareto = json.loads((tmp_path / "pareto.json").read_text())
    assert all(p["energy_uj"] > 0 for p in pareto["points"])


def test_energy_config_errors(tmp_path, data):
    vocab, ids = data
    with pytest.raises(ValueError, match="energy_hardware"):
        _cfg(energy_hardware="toaster")
    with pytest.raises(ValueError, match="energy_fn"):
        Trainer(
            torch.nn.Linear(2, 2),
            ids["train"],
            ids["valid"],
            _cfg(max_energy_uj=5.0),
            tmp_path,
            vocab,
            quiet=True,
        )


def test_train_step_loss_equals_a_manual_forward(tmp_path, data):
    import copy

    vocab, ids = data
    trainer = Trainer(
        _model(vocab), ids["train"], ids["valid"], _cfg(), tmp_path, vocab, quiet=True
    )
    run = trainer._prepare(resume=False)
    batch = next(trainer._batches(run.state))
    reference = copy.deepcopy(trainer.model).train()
    before = [p.detach().clone() for p in trainer.model.parameters()]
    torch.manual_seed(7)
    _, loss, stats = reference(batch, labels=batch)
    torch.manual_seed(7)
    out = trainer._train_step(run, batch)
    assert out.loss == float(loss.detach()) and out.lm_loss == float(stats.lm_loss)
    assert math.isfinite(out.grad_norm) and out.grad_norm > 0
    assert run.scheduler.last_epoch == 1 and run.state.step == 0  # counted by the loop
    assert any(
        not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters(), strict=True)
    )


def test_train_step_stops_before_updating_on_a_non_finite_loss(tmp_path, data, monkeypatch):
    from qtensorformer.train import TrainingDiverged

    vocab, ids = data
    model = _model(vocab)
    trainer = Trainer(model, ids["train"], ids["valid"], _cfg(), tmp_path, vocab, quiet=True)
    run = trainer._prepare(resume=False)
    orig = model.forward

    def poisoned(*a, **k):
        logits, loss, stats = orig(*a, **k)
        return logits, loss * float("inf"), stats

    monkeypatch.setattr(model, "forward", poisoned)
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(TrainingDiverged, match="step 1: loss = "):
        trainer._train_step(run, next(trainer._batches(run.state)))
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert run.scheduler.last_epoch == 0


def test_weight_decay_skips_norms_and_takes_tt_cores(data):
    from qtensorformer.train.trainer import param_groups

    vocab, _ = data
    model = _model(vocab, use_tt_ffn=True)
    decay, rest = (g["params"] for g in param_groups(model, 0.1))
    names = {id(p): n for n, p in model.named_parameters()}
    assert any("cores" in names[id(p)] for p in decay)
    kept = ("bias", "ln_q.weight", "ln1.weight", "ln2.weight", "circuit.weights")
    assert not any(names[id(p)].endswith(kept) for p in decay)
    assert any(names[id(p)].endswith("ln1.weight") for p in rest)
    assert len(decay) + len(rest) == len(list(model.parameters()))


def test_run_folder_layout(tmp_path, data):
    from qtensorformer.files import RunDir

    vocab, ids = data
    cfg = _cfg(max_steps=4)
    Trainer(_model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    run = RunDir(tmp_path)
    assert run.is_run() and run.has_best() and run.pareto.is_file()
    assert run.read_summary()["steps"] == 4
    assert latest_checkpoint(tmp_path) == run.checkpoint(4)
    assert [r["event"] for r in run.read_metrics()][-1] == "end"


def test_train_records_count_tokens_so_far_and_average_the_window(tmp_path, data):
    """``tokens`` is the running total (the batch's count is ``batch_tokens``), and
    ``lm_loss`` is the window's mean, the one its ``ppl`` is computed from."""
    vocab, ids = data
    cfg = _cfg(max_steps=6, log_every=3, eval_every=6)
    Trainer(_model(vocab), ids["train"], ids["valid"], cfg, tmp_path, vocab, quiet=True).fit()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in recs if r["event"] == "train"]
    assert [r["step"] for r in train] == [3, 6]
    assert [r["tokens"] for r in train] == [3 * cfg.tokens_per_step, 6 * cfg.tokens_per_step]
    assert all(r["batch_tokens"] == cfg.batch_size * cfg.seq_len for r in train)
    for r in train:
        assert r["ppl"] == pytest.approx(math.exp(r["lm_loss"]))
        assert "step_lm_loss" in r


def test_max_minutes_bounds_the_whole_run_and_sizes_the_schedule(tmp_path, data, monkeypatch):
    """A run under max_minutes sizes its schedule to the steps that fit (leaving warm-up and
    finishing the decay), keeps a share for the final evaluation, and ends near the limit.

    The trainer's clock is virtual here: each optimiser step costs 20 ms and each evaluated
    token 20 µs, so that other work on a shared machine cannot stretch the run after the
    plan is made; the planning and stopping logic is the same for any clock."""
    step_s, token_s = 0.02, 2e-5
    clock = types.SimpleNamespace(now=0.0)
    virtual_time = types.SimpleNamespace(perf_counter=lambda: clock.now)
    monkeypatch.setattr(trainer_module, "time", virtual_time)
    clip = torch.nn.utils.clip_grad_norm_

    def clip_and_tick(*args, **kwargs):  # called once in every optimiser step
        clock.now += step_s
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip_and_tick)
    vocab, ids = data
    long_valid = ids["valid"].repeat(400)  # a final evaluation far too long for the budget
    cfg = _cfg(max_steps=None, epochs=50.0, max_minutes=0.15, warmup_steps=100, eval_every=10**6)
    trainer = Trainer(_model(vocab), ids["train"], long_valid, cfg, tmp_path, vocab, quiet=True)
    evaluate_now = trainer._eval

    def evaluate_and_tick(*args, **kwargs):
        result = evaluate_now(*args, **kwargs)
        clock.now += result.tokens * token_s
        return result

    monkeypatch.setattr(trainer, "_eval", evaluate_and_tick)
    configured = trainer.total_steps
    res = trainer.fit()
    recs = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    plan = next(r for r in recs if r["event"] == "schedule")
    assert 6 < plan["steps"] < configured and res.steps == plan["steps"]
    assert plan["final_eval_tokens"] is not None and res.valid.tokens <= plan["final_eval_tokens"]
    # the limit holds, final evaluation included
    assert 0.15 * 60 * 0.9 < clock.now <= 0.15 * 60 * 1.02
    lrs = [r["lr"] for r in recs if r["event"] == "train"]
    # out of the warm-up (at most a tenth of the plan), through the decay
    assert max(lrs) == pytest.approx(cfg.lr, rel=0.2) and lrs[-1] < 0.5 * cfg.lr
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["valid_tokens"] == res.valid.tokens < long_valid.numel() - 1
