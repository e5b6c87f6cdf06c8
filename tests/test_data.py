"""Corpora, tokenizers and windowing."""

from __future__ import annotations

import pytest
import torch

from qtensorformer.data import (
    BPETokenizer,
    DataNotFoundError,
    WordVocab,
    build_tokenizer,
    eval_windows,
    find_data_dir,
    load_corpus,
    load_tokenizer,
    synthetic_corpus,
    train_batches,
    windows,
)


def _write_corpus(root, name="wikitext-2"):
    d = root / name
    d.mkdir(parents=True)
    lines = {"train": ["a b c", "", "b c d"], "valid": ["a d"], "test": ["c c"]}
    for s, ls in lines.items():
        (d / f"{s}.txt").write_text("\n".join(ls) + "\n")
    return d


def test_search_order(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    arg, env = tmp_path / "arg", tmp_path / "env"
    _write_corpus(arg)
    _write_corpus(env)
    monkeypatch.setenv("QTF_DATA_DIR", str(env))
    assert find_data_dir("wikitext-2", arg) == (arg / "wikitext-2").resolve()
    assert find_data_dir("wikitext-2") == (env / "wikitext-2").resolve()
    assert find_data_dir("wikitext-2", arg / "wikitext-2") == (arg / "wikitext-2").resolve()
    monkeypatch.delenv("QTF_DATA_DIR")
    _write_corpus(tmp_path / "data")
    assert find_data_dir("wikitext-2") == (tmp_path / "data" / "wikitext-2").resolve()


def test_missing_data_lists_every_place(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QTF_DATA_DIR", str(tmp_path / "env"))
    with pytest.raises(DataNotFoundError) as e:
        load_corpus("wikitext-2", tmp_path / "arg", use_hf=False)
    msg = str(e.value)
    for place in ("--data-dir", "$QTF_DATA_DIR", "./data", "../shared/data", "Fix:"):
        assert place in msg


def test_local_corpus_and_word_counts(tmp_path):
    _write_corpus(tmp_path)
    c = load_corpus("wikitext-2", tmp_path, use_hf=False)
    assert c.train == ["a b c", "", "b c d"]
    assert c.num_tokens("train") == (3 + 1) + (0 + 1) + (3 + 1)  # words + one <eos> per line


def test_shared_wikitext2_has_the_standard_counts():
    try:
        c = load_corpus("wikitext-2", use_hf=False)
    except DataNotFoundError:
        pytest.skip("WikiText-2 is not in any data directory here")
    v = WordVocab.build(c.train)
    assert v.vocab_size == 33278
    assert [v.encode_lines(c.split(s)).numel() for s in ("train", "valid", "test")] == [
        2088628,
        217646,
        245569,
    ]


def test_word_vocab_top_k_and_round_trip(tmp_path):
    lines = ["a a a b b c", "d a b"]
    v = WordVocab.build(lines, max_size=4)  # a, b + <eos>, <unk>
    assert set(v.itos) == {"a", "b", "<eos>", "<unk>"}
    ids = v.encode_lines(["a c b"])
    assert ids.tolist() == [v.stoi["a"], v.unk_id, v.stoi["b"], v.eos_id]
    assert "top-4" in v.describe()
    v.save(tmp_path / "tok")
    back = load_tokenizer(tmp_path / "tok")
    assert back.itos == v.itos and back.max_size == 4
    with pytest.raises(ValueError, match="max_size"):
        WordVocab.build(lines, max_size=1)


def test_bpe_round_trip(tmp_path):
    pytest.importorskip("tokenizers")
    corpus = synthetic_corpus(300, 20, 20)
    bpe = build_tokenizer("bpe:120", corpus.train)
    assert isinstance(bpe, BPETokenizer) and bpe.vocab_size <= 120
    line = corpus.valid[0]
    assert bpe.decode(bpe.encode(line)) == line
    ids = bpe.encode_lines(corpus.valid[:3])
    assert int((ids == bpe.eos_id).sum()) == 3
    bpe.save(tmp_path / "bpe")
    back = load_tokenizer(tmp_path / "bpe")
    assert torch.equal(back.encode_lines(corpus.valid[:3]), ids)


def test_hf_autotokenizer_from_local_folder(tmp_path):
    pytest.importorskip("transformers")
    from transformers import PreTrainedTokenizerFast

    corpus = synthetic_corpus(200, 10, 10)
    bpe = BPETokenizer.train(corpus.train, 100)
    fast = PreTrainedTokenizerFast(tokenizer_object=bpe.tok, eos_token="<eos>", unk_token="<unk>")
    fast.save_pretrained(tmp_path / "hf")
    tok = build_tokenizer(f"hf:{tmp_path / 'hf'}", [])
    assert tok.encode(corpus.valid[0]) == bpe.encode(corpus.valid[0])
    assert tok.eos_id == bpe.eos_id
    tok.save(tmp_path / "saved")
    assert load_tokenizer(tmp_path / "saved").encode("the bank") == tok.encode("the bank")


def test_synthetic_corpus_is_deterministic_and_ambiguous():
    a, b = synthetic_corpus(100, 10, 10, seed=3), synthetic_corpus(100, 10, 10, seed=3)
    assert a.train == b.train and a.valid != a.train[:10]
    words = {w for line in a.train for w in line.split()}
    assert {"bank", "pitch", "scale"} <= words


def test_windows_cover_every_token_once():
    n, L = int(torch.randint(50, 200, ())), int(torch.randint(3, 12, ()))
    ids = torch.randperm(n)
    targets = torch.cat([w[:, 1:].reshape(-1) for w in eval_windows(ids, L, 4)])
    assert torch.equal(targets, ids[1:])
    win = windows(ids, L)
    assert torch.equal(win[1:, 0], win[:-1, -1])  # overlap of one token


def test_train_batches_resume_from_index():
    ids = torch.arange(1000)
    full = list(train_batches(ids, 4, 10, seed=1, epoch=2))
    tail = list(train_batches(ids, 4, 10, seed=1, epoch=2, start=5))
    assert all(torch.equal(a, b) for a, b in zip(full[5:], tail, strict=True))
    other = list(train_batches(ids, 4, 10, seed=1, epoch=3))
    assert not torch.equal(full[0], other[0])
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(train_batches(torch.arange(20), 4, 10, 0, 0))
