"""Corpora, tokenizers and batching for language modelling."""

from .base import SPLITS, Corpus
from .batching import eval_windows, num_windows, train_batches, windows
from .corpus import DATASETS, DataNotFoundError, find_data_dir, load_corpus
from .synthetic import synthetic_corpus, synthetic_lines
from .tokenizers import (
    BPETokenizer,
    HFTokenizer,
    Tokenizer,
    WordVocab,
    build_tokenizer,
    load_tokenizer,
)

__all__ = [
    "DATASETS",
    "SPLITS",
    "BPETokenizer",
    "Corpus",
    "DataNotFoundError",
    "HFTokenizer",
    "Tokenizer",
    "WordVocab",
    "build_tokenizer",
    "eval_windows",
    "find_data_dir",
    "load_corpus",
    "load_tokenizer",
    "num_windows",
    "synthetic_corpus",
    "synthetic_lines",
    "train_batches",
    "windows",
]
