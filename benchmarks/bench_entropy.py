"""Per-token entanglement entropy of a trained every-pillar model on a real WikiText-2 test
sentence: each token's score S_t, TT-FFN rank and attention path per layer, as a table and a
picture (the layers × tokens heat map of ``qtf report``, beside the results file), plus how
well S_t tracks how hard the token actually was for the model (its surprisal, −log p) over
many test windows.

    python benchmarks/bench_entropy.py --model runs/core/1ep-all-seed0 --write

The sentence is one line of the WikiText-2 test split (CC BY-SA, Merity et al. 2016), cut at
its first full stop; ``--line`` picks it. What ``qtf explain MODEL --text "..."`` prints for it
is the same audit.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from _common import machine, results_path, write_section
from _training import model_dir

from qtensorformer.compress import spearman
from qtensorformer.data import load_corpus, load_tokenizer
from qtensorformer.explain import audit
from qtensorformer.files import TOKENIZER_DIR
from qtensorformer.model import QTensorFormer
from qtensorformer.report.content import Decision
from qtensorformer.report.figures import draw_tokens

ROOT = Path(__file__).resolve().parent.parent
FIGURE_NAME = "entropy_tokens.png"


def sentence(line: int, data_dir: str | None) -> str:
    """Line ``line`` of the test split, up to and including its first full stop."""
    text = load_corpus("wikitext-2", data_dir).split("test")[line].strip()
    if not text:
        raise SystemExit(f"test line {line} is empty; pick another --line")
    words = text.split()
    end = words.index(".") + 1 if "." in words else len(words)
    return " ".join(words[:end])


def surprisal(logits: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """−log p (nats) of each token after the first given the tokens before it: logits
    (b, n, V) and ids (b, n) give (b, n-1), entry j for token j+1."""
    logp = torch.log_softmax(logits[:, :-1].double(), -1)  # (b, n-1, V)
    return -logp.gather(2, ids[:, 1:, None])[..., 0]


@torch.no_grad()
def score_vs_surprisal(model: QTensorFormer, test_ids: torch.Tensor, windows: int) -> list[str]:
    """Spearman correlations of S_t (each layer) with surprisal over ``windows`` windows of
    test text: the surprisal of token t itself, and of token t+1 (the prediction that
    position t's computation, which S_t sizes, produces)."""
    n = model.config.max_seq_len
    ids = test_ids[: windows * n].view(windows, n)  # (w, n)
    logits, _, stats = model(ids)
    s = surprisal(logits, ids)  # (w, n-1): token j+1 given tokens <= j
    out = []
    for i, layer in enumerate(stats.layers):
        if layer.entropy is None:
            continue
        e = layer.entropy.double()  # (w, n)
        own = spearman(e[:, 1:].flatten().tolist(), s.flatten().tolist(), permutations=999)
        nxt = spearman(e[:, :-1].flatten().tolist(), s.flatten().tolist(), permutations=999)
        out.append(
            f"| {i} | {own.r:+.3f} [{own.ci[0]:+.3f}, {own.ci[1]:+.3f}] | "
            f"{nxt.r:+.3f} [{nxt.ci[0]:+.3f}, {nxt.ci[1]:+.3f}] | {own.n:,} |"
        )
    return out


def token_rows(trail, text_tokens: list[str], nll: torch.Tensor) -> list[str]:
    """One row per token: S_t, rank and path of every layer, and its surprisal."""
    L = trail.n_layers
    head = " | ".join(f"S_t L{i} | rank L{i} | path L{i}" for i in range(L))
    rule = "|---:|---|" + "---:|---:|---|" * L + "---:|"
    rows = [f"| t | token | {head} | surprisal (nats) |", rule]
    for t, tok in enumerate(text_tokens):
        cells = []
        for layer in range(L):
            d = trail.layer(layer)[t]
            cells += [f"{d.entropy:.3f}", str(d.rank), "Q" if d.path == "quantum" else "c"]
        s = "—" if t == 0 else f"{float(nll[t - 1]):.2f}"
        rows.append(f"| {t} | `{tok}` | " + " | ".join(cells) + f" | {s} |")
    return rows


def summary(trail) -> list[str]:
    """Range, mean and spread of S_t per layer, the hardest and simplest token and their ranks."""
    out = []
    for layer in range(trail.n_layers):
        ds = trail.layer(layer)
        ent = [d.entropy for d in ds]
        hi, lo = max(ds, key=lambda d: d.entropy), min(ds, key=lambda d: d.entropy)
        routed = sum(d.path == "quantum" for d in ds)
        out.append(
            f"- Layer {layer}: S_t from {min(ent):.3f} to {max(ent):.3f} nats (mean "
            f"{statistics.fmean(ent):.3f}, std {statistics.stdev(ent):.3f}); highest `{hi.token}` "
            f"(rank {hi.rank}), lowest `{lo.token}` (rank {lo.rank}); {routed} of {len(ds)} "
            "tokens routed to quantum-kernel attention."
        )
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/core/1ep-all-seed0", help="run or model folder")
    ap.add_argument("--line", type=int, default=3, help="test-split line of the sentence")
    ap.add_argument("--windows", type=int, default=64, help="test windows for the correlation")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args(argv)
    src = model_dir(ROOT / args.model)
    model = QTensorFormer.from_pretrained(src).eval()
    if not model.config.use_adaptive_rank:
        raise SystemExit(f"{src} has no adaptive rank: it computes no per-token score")
    tok = load_tokenizer(src / TOKENIZER_DIR)
    text = sentence(args.line, args.data_dir)
    ids = torch.tensor(tok.encode(text))
    trail = audit(model, ids, tok)
    with torch.no_grad():
        nll = surprisal(model(ids[None]).logits, ids[None])[0]  # (n-1,)
    words = [d.token for d in trail.layer(0)]
    test_ids = tok.encode_lines(load_corpus("wikitext-2", args.data_dir).split("test"))
    decisions = [
        [Decision(d.token, d.entropy, d.rank, d.path) for d in trail.layer(i)]
        for i in range(trail.n_layers)
    ]
    figure = results_path().parent / "figures" / FIGURE_NAME  # beside the results file
    figure.parent.mkdir(parents=True, exist_ok=True)
    draw_tokens(decisions, figure)
    given = argv if argv is not None else sys.argv[1:]
    cmd = "python benchmarks/bench_entropy.py " + " ".join(given)
    c = model.config
    body = "\n".join(
        [
            "### Per-token entanglement entropy on a WikiText-2 test sentence (issue #17)",
            "",
            f"Command: `{cmd}`  ",
            f"Machine: {machine()}  ",
            f"Model: `{src.relative_to(ROOT)}` (score: {c.entropy_source}, ranks "
            f"{c.r_min}..{c.r_max} in steps of {c.rank_step}, routing target "
            f"{c.route_fraction:.0%}). Text: line "
            f"{args.line} of the WikiText-2 test split up to its first full stop (CC BY-SA, "
            "Merity et al. 2016), run on its own as `qtf explain` would. S_t in nats (at most "
            f"{c.score_max:.3f}); path Q = quantum-kernel attention, c = softmax attention.",
            "",
            *token_rows(trail, words, nll),
            "",
            *summary(trail),
            "",
            f"Picture: [figures/{FIGURE_NAME}](figures/{FIGURE_NAME}) (layers × tokens, colour "
            "S_t, rank written in, routed tokens boxed; layers counted from 0).",
            "",
            "Does S_t track how hard a token is? Spearman ρ of S_t with the surprisal −log p of "
            f"the token itself and of the next token, over the first {args.windows} windows of "
            f"{c.max_seq_len} test tokens (95% Bonett–Wright intervals):",
            "",
            "| layer | ρ with the token's surprisal | ρ with the next token's surprisal | tokens |",
            "|---:|---|---|---:|",
            *score_vs_surprisal(model, test_ids, args.windows),
        ]
    )
    print(body)
    if args.write:
        write_section("bench_entropy", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
