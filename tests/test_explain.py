"""Audit trail, template explanations, the LLM explainer against a local HTTP server, and
`qtf explain`."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
import torch
from typer.testing import CliRunner

from qtensorformer import ModelConfig, QTensorFormer
from qtensorformer.cli import app
from qtensorformer.data import WordVocab, synthetic_corpus
from qtensorformer.explain import (
    AuditTrail,
    LLMExplainer,
    audit,
    explain_budget,
    explain_token,
    explain_trail,
)

CFG = dict(
    vocab_size=60,
    d_model=32,
    n_heads=2,
    n_layers=2,
    tt_rank=6,
    r_min=2,
    use_quantum_attention=True,
    use_selective_routing=True,
    use_adaptive_rank=True,
    route_fraction=0.4,
)


def _model(**kw):
    m = QTensorFormer(ModelConfig(**{**CFG, **kw}))
    # one training forward sets each θ at the 40% quantile of its scores: both paths occur
    m(torch.randint(0, m.config.vocab_size, (4, 24)))
    return m


@pytest.mark.parametrize("source", ["quantum", "attention"])
def test_audit_matches_the_forward_pass(source):
    torch.manual_seed(0)
    m = _model(entropy_source=source)
    ids = torch.randint(0, 60, (2, 24))
    trail = audit(m, ids)
    assert m.training  # audit restores the mode
    m.eval()
    with torch.no_grad():
        _, _, stats = m(ids)
    assert len(trail.records) == 2 * 2 * 24 and trail.n_layers == 2
    for li, st in enumerate(stats.layers):
        for b in range(2):
            recs = trail.layer(li, b)
            assert [r.position for r in recs] == list(range(24))
            assert [r.path == "quantum" for r in recs] == st.routed[b].tolist()
            assert [r.rank for r in recs] == st.rank[b].tolist()
            for r in recs:
                # the router's rule and the scheduler's rule, recomputed from the record
                assert (r.hardness > r.threshold) == (r.path == "quantum")
                want = min(max(round(r.r_min + r.alpha * r.entropy), r.r_min), r.r_max)
                assert abs(r.rank - want) <= 1  # round-half cases may differ by one
        # the per-token FLOPs add up to the block's FLOPs
        layer_recs = [r for r in trail.records if r.layer == li]
        assert sum(r.flops for r in layer_recs) == pytest.approx(sum(st.flops.values()), rel=1e-9)
    assert {r.path for r in trail.records} == {"quantum", "classical"}


def test_audit_json_round_trip_and_table(tmp_path):
    torch.manual_seed(1)
    m = _model()
    vocab = WordVocab([f"w{i}" for i in range(58)] + ["<eos>", "<unk>"])
    trail = audit(m, torch.randint(0, 60, (10,)), vocab)
    assert trail.records[0].token.startswith("w")
    path = trail.save(tmp_path / "audit.json")
    back = AuditTrail.load(path)
    assert back.records == trail.records and back.settings["entropy_source"] == "quantum"
    assert json.loads(path.read_text())["records"][3]["position"] == 3
    t = trail.table(1)
    assert t.row_count == 10


def test_templates_are_deterministic_and_state_the_numbers():
    torch.manual_seed(2)
    m = _model()
    trail = audit(m, torch.randint(0, 60, (16,)))
    a, b = explain_trail(trail), explain_trail(trail)
    assert a == b and a[0].startswith("Layer 0: 16 tokens")
    routed = next(r for r in trail.records if r.path == "quantum")
    text = explain_token(routed, trail.settings)
    assert "routed to the quantum-kernel attention path" in text
    assert f"{routed.hardness:.3f}" in text and f"{routed.threshold:.3f}" in text
    assert f"TT rank {routed.rank} of {routed.r_max}" in text
    stayed = next(r for r in trail.records if r.path == "classical")
    assert "stayed on classical softmax attention" in explain_token(stayed, trail.settings)
    events = [
        {
            "event": "budget",
            "step": 40,
            "metric": "latency_ms",
            "value": 12.5,
            "limit": 10.0,
            "action": "router target 0.2 -> 0.16, theta +0.05",
        },
        {"event": "eval", "step": 40},
    ]
    lines = explain_budget(events)
    assert lines == [
        "At step 40, the query cost 12.5 ms measured latency, over the budget of 10: "
        "router target 0.2 -> 0.16, theta +0.05."
    ]


class _Server:
    """An OpenAI-compatible chat endpoint on 127.0.0.1 with a scripted behaviour."""

    def __init__(self, mode: str):
        self.requests: list[tuple[dict, dict]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append((body, dict(self.headers)))
                if mode == "slow":
                    time.sleep(2)
                if mode == "error":
                    self.send_response(500)
                    self.end_headers()
                    return
                reply = (
                    b"not json"
                    if mode == "garbage"
                    else json.dumps(
                        {"choices": [{"message": {"role": "assistant", "content": "LLM SAYS HI"}}]}
                    ).encode()
                )
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def trail():
    torch.manual_seed(3)
    return audit(_model(), torch.randint(0, 60, (12,)))


def test_llm_explainer_talks_openai_chat(trail, monkeypatch):
    srv = _Server("ok")
    try:
        monkeypatch.setenv("MY_KEY", "sekrit")
        res = LLMExplainer(srv.url, "k2-think", api_key_env="MY_KEY", timeout=5).explain(trail)
    finally:
        srv.close()
    assert res.source == "llm" and res.text == "LLM SAYS HI" and res.error is None
    body, headers = srv.requests[0]
    assert body["model"] == "k2-think"
    assert [m["role"] for m in body["messages"]] == ["system", "user"]
    assert "decisions" in body["messages"][1]["content"]
    assert headers["Authorization"] == "Bearer sekrit"


@pytest.mark.parametrize("mode", ["error", "garbage", "slow"])
def test_llm_explainer_falls_back_to_templates(trail, mode):
    srv = _Server(mode)
    try:
        res = LLMExplainer(srv.url, timeout=0.5).explain(trail)
    finally:
        srv.close()
    assert res.source == "templates" and res.error
    assert res.text.splitlines()[0] == explain_trail(trail)[0]


def test_llm_explainer_rejects_a_bad_url():
    with pytest.raises(ValueError, match="http"):
        LLMExplainer("localhost:8000")


def test_cli_explain(tmp_path):
    torch.manual_seed(4)
    vocab = WordVocab.build(synthetic_corpus(200, 5, 5, seed=0).train)
    m = _model(vocab_size=vocab.vocab_size)
    m.save_pretrained(tmp_path / "m")
    vocab.save(tmp_path / "m" / "tokenizer")
    srv = _Server("ok")
    try:
        r = CliRunner().invoke(
            app,
            [
                "explain",
                str(tmp_path / "m"),
                "--text",
                "the bank by the river",
                "--layer",
                "1",
                "--json",
                str(tmp_path / "a.json"),
                "--explainer-url",
                srv.url,
            ],
        )
    finally:
        srv.close()
    assert r.exit_code == 0, r.output
    assert "Layer 1" in r.output and "river" in r.output and "LLM SAYS HI" in r.output
    saved = AuditTrail.load(tmp_path / "a.json")
    assert [x.token for x in saved.layer(0)] == ["the", "bank", "by", "the", "river"]
    r = CliRunner().invoke(app, ["explain", str(tmp_path / "m"), "--text", "the bank"])
    assert r.exit_code == 0 and "Layer 0: 2 tokens" in " ".join(r.output.split())
    r = CliRunner().invoke(app, ["explain", str(tmp_path / "m"), "--text", "the", "--layer", "7"])
    assert r.exit_code == 2 and "out of range" in r.output
