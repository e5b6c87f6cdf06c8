"""Tokenizers with one interface: a word-level vocabulary, BPE trained locally with Hugging Face
``tokenizers``, and any ``AutoTokenizer`` saved in a local folder.

Every tokenizer turns lines into one id stream with an end-of-line id after each line (the
``<eos>`` of word-level WikiText), saves itself into a checkpoint folder and is loaded back
with :func:`load_tokenizer`. ``describe()`` is the line every result states.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import torch

__all__ = [
    "BPETokenizer",
    "HFTokenizer",
    "Tokenizer",
    "WordVocab",
    "build_tokenizer",
    "load_tokenizer",
]

EOS, UNK = "<eos>", "<unk>"
META = "qtf_tokenizer.json"


def _save_meta(directory: str | Path, kind: str, **extra) -> Path:
    """Create ``directory`` and write its tokenizer metadata; returns the folder."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    meta = {"format": "qtensorformer-tokenizer", "kind": kind, **extra}
    (d / META).write_text(json.dumps(meta) + "\n")
    return d


class Tokenizer:
    """Interface shared by the tokenizers."""

    kind: str = ""
    eos_id: int = 0

    @property
    def vocab_size(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, text: str) -> list[int]:  # pragma: no cover - abstract
        """Ids of ``text`` (no end-of-line id)."""
        raise NotImplementedError

    def encode_lines(self, lines: Iterable[str]) -> torch.Tensor:
        """One int64 stream: each line's ids followed by the end-of-line id."""
        out: list[int] = []
        for line in lines:
            out.extend(self.encode(line))
            out.append(self.eos_id)
        return torch.tensor(out, dtype=torch.int64)

    def decode(self, ids: Sequence[int]) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover - abstract
        raise NotImplementedError

    def save(self, directory: str | Path) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class WordVocab(Tokenizer):
    """Word-level vocabulary: whitespace split, ``<eos>`` per line, ``<unk>`` for other words.

    ``WordVocab.build(lines)`` keeps every word (WikiText-2's train split gives the standard
    33,278 entries); ``max_size=K`` keeps the K most frequent (ties: first seen), ``<unk>`` and
    ``<eos>`` included.

    Example:
        >>> v = WordVocab.build(["a b a", "c a"])
        >>> v.encode_lines(["a c", "zzz"]).tolist(), v.itos
        ([0, 3, 2, 4, 2], ['a', 'b', '<eos>', 'c', '<unk>'])
    """

    kind = "word"

    def __init__(self, itos: Sequence[str], max_size: int | None = None) -> None:
        self.itos = list(itos)
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("vocabulary has duplicate entries")
        for special in (EOS, UNK):
            if special not in self.stoi:
                raise ValueError(f"vocabulary lacks {special}")
        self.eos_id, self.unk_id = self.stoi[EOS], self.stoi[UNK]
        self.max_size = max_size

    @classmethod
    def build(cls, lines: Iterable[str], max_size: int | None = None) -> WordVocab:
        counts: Counter[str] = Counter()
        for line in lines:
            counts.update(line.split())
            counts[EOS] += 1
        order = list(counts)  # first-seen order (Counter keeps insertion order)
        if UNK not in counts:
            order.append(UNK)
        if max_size is not None:
            if max_size < 2:
                raise ValueError(
                    f"max_size must be >= 2 (room for <unk> and <eos>), got {max_size}"
                )
            rank = {w: i for i, w in enumerate(order)}
            top = sorted(order, key=lambda w: (-counts[w], rank[w]))
            keep = [w for w in top if w not in (EOS, UNK)][: max_size - 2]
            chosen = set(keep) | {EOS, UNK}
            order = [w for w in order if w in chosen]
        return cls(order, max_size)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        get, unk = self.stoi.get, self.unk_id
        return [get(w, unk) for w in text.split()]

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.itos[int(i)] if int(i) != self.eos_id else "\n" for i in ids).replace(
            " \n ", "\n"
        )

    def describe(self) -> str:
        if self.max_size is None:
            return f"word-level, full vocabulary of {self.vocab_size:,}"
        return f"word-level, top-{self.vocab_size:,} words, the rest <unk>"

    def save(self, directory: str | Path) -> None:
        d = _save_meta(directory, "word", max_size=self.max_size)
        (d / "vocab.json").write_text(json.dumps(self.itos, ensure_ascii=False) + "\n")


def _require_tokenizers():
    try:
        import tokenizers
    except ImportError as e:
        raise ImportError(
            "BPE needs Hugging Face `tokenizers`: pip install 'qtensorformer[hf]'"
        ) from e
    return tokenizers


class BPETokenizer(Tokenizer):
    """Byte-pair encoding trained locally with Hugging Face ``tokenizers`` (whitespace
    pre-split, ``##`` continuation prefix, ``<unk>`` and ``<eos>`` specials).

    Example:
        >>> bpe = BPETokenizer.train(["low lower lowest", "new newer"] * 50, vocab_size=40)
        >>> bpe.decode(bpe.encode("lower newest"))
        'lower newest'
    """

    kind = "bpe"

    def __init__(self, tok) -> None:
        self.tok = tok
        eos = tok.token_to_id(EOS)
        if eos is None:
            raise ValueError("BPE tokenizer lacks the <eos> special token")
        self.eos_id = eos

    @classmethod
    def train(cls, lines: Iterable[str], vocab_size: int = 8000) -> BPETokenizer:
        tk = _require_tokenizers()
        tok = tk.Tokenizer(tk.models.BPE(unk_token=UNK, continuing_subword_prefix="##"))
        tok.pre_tokenizer = tk.pre_tokenizers.WhitespaceSplit()
        tok.decoder = tk.decoders.WordPiece(prefix="##", cleanup=False)
        trainer = tk.trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[UNK, EOS],
            continuing_subword_prefix="##",
            show_progress=False,
        )
        tok.train_from_iterator(lines, trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self.tok.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text).ids

    def encode_lines(self, lines: Iterable[str]) -> torch.Tensor:
        out: list[int] = []
        for enc in self.tok.encode_batch(list(lines)):
            out.extend(enc.ids)
            out.append(self.eos_id)
        return torch.tensor(out, dtype=torch.int64)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids], skip_special_tokens=False)

    def describe(self) -> str:
        return f"BPE ({self.vocab_size:,} tokens, trained on the train split)"

    def save(self, directory: str | Path) -> None:
        d = _save_meta(directory, "bpe")
        self.tok.save(str(d / "tokenizer.json"))


class HFTokenizer(Tokenizer):
    """Any Hugging Face ``AutoTokenizer`` saved in a local folder (no download).

    The end-of-line id is the tokenizer's ``eos_token_id`` (required).
    """

    kind = "hf"

    def __init__(self, path: str | Path) -> None:
        try:
            from transformers import AutoTokenizer
        except ImportError as e:
            raise ImportError(
                "an AutoTokenizer needs transformers: pip install 'qtensorformer[hf]'"
            ) from e
        self.path = str(path)
        if not Path(path).is_dir():
            raise FileNotFoundError(f"no tokenizer folder at {path}")
        self.tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        if self.tok.eos_token_id is None:
            raise ValueError(
                f"the tokenizer in {path} has no eos_token; set one (tokenizer.eos_token = ...) "
                "and save it again"
            )
        self.eos_id = int(self.tok.eos_token_id)

    @property
    def vocab_size(self) -> int:
        return len(self.tok)

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]

    def decode(self, ids: Sequence[int]) -> str:
        return self.tok.decode([int(i) for i in ids])

    def describe(self) -> str:
        return f"Hugging Face tokenizer from {self.path} ({self.vocab_size:,} tokens)"

    def save(self, directory: str | Path) -> None:
        d = _save_meta(directory, "hf")
        self.tok.save_pretrained(str(d / "hf_tokenizer"))


def build_tokenizer(spec: str, train_lines: Sequence[str]) -> Tokenizer:
    """A tokenizer from a spec: ``"word"`` (full vocabulary), ``"word:K"`` (top K),
    ``"bpe:N"`` (BPE with N tokens, trained on ``train_lines``), ``"hf:PATH"``."""
    kind, _, arg = spec.partition(":")
    if kind == "word":
        return WordVocab.build(train_lines, int(arg) if arg else None)
    if kind == "bpe":
        return BPETokenizer.train(train_lines, int(arg) if arg else 8000)
    if kind == "hf":
        if not arg:
            raise ValueError("hf tokenizer spec needs a folder: hf:PATH")
        return HFTokenizer(arg)
    raise ValueError(f"unknown tokenizer {spec!r}; use word, word:K, bpe:N or hf:PATH")


def load_tokenizer(directory: str | Path) -> Tokenizer:
    """Load a tokenizer saved by its ``save``."""
    d = Path(directory)
    meta_path = d / META
    if not meta_path.is_file():
        raise FileNotFoundError(f"no saved tokenizer in {d} (missing {META})")
    meta = json.loads(meta_path.read_text())
    kind = meta.get("kind")
    if kind == "word":
        return WordVocab(json.loads((d / "vocab.json").read_text()), meta.get("max_size"))
    if kind == "bpe":
        tk = _require_tokenizers()
        return BPETokenizer(tk.Tokenizer.from_file(str(d / "tokenizer.json")))
    if kind == "hf":
        return HFTokenizer(d / "hf_tokenizer")
    raise ValueError(f"{meta_path}: unknown tokenizer kind {kind!r}")
