"""Worker for tests/test_ddp.py: trains a tiny model for a few steps and writes the losses.

Run alone (one process) or under ``torchrun --nproc_per_node 2`` (gloo on CPU); the global
batch is the same either way.
"""

from __future__ import annotations

import json
import sys


def main(out: str, run_dir: str, variant: str = "plain") -> None:
    import torch

    from qtensorformer import ModelConfig, QTensorFormer
    from qtensorformer.data import WordVocab, synthetic_corpus
    from qtensorformer.train import TrainConfig, Trainer

    torch.set_num_threads(1)
    corpus = synthetic_corpus(300, 40, 40, seed=7)
    vocab = WordVocab.build(corpus.train)
    ids = {s: vocab.encode_lines(corpus.split(s)) for s in ("train", "valid")}
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=vocab.vocab_size,
        d_model=32,
        n_layers=2,
        n_heads=2,
        max_seq_len=32,
        tt_rank=4,
        dropout=0.0,
        **(
            dict(use_quantum_attention=True, use_selective_routing=True, use_adaptive_rank=True)
            if variant == "routed"
            else {}
        ),
    )
    model = QTensorFormer(cfg)
    tcfg = TrainConfig(
        batch_size=8,
        seq_len=32,
        max_steps=5,
        eval_every=100,
        warmup_steps=1,
        eval_max_tokens=100,
        progress=False,
        seed=1,
    )
    trainer = Trainer(model, ids["train"], ids["valid"], tcfg, run_dir, vocab, quiet=True)
    res = trainer.fit()
    thresholds = [float(b.attn.router.threshold) for b in model.blocks if b.attn.router]
    with open(f"{out}.rank{trainer.rank}", "w") as f:
        json.dump(thresholds, f)
    if trainer.is_main:
        with open(out, "w") as f:
            json.dump({"losses": res.losses, "world": trainer.world_size}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
