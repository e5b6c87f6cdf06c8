"""Corpora: WikiText-2 from a data directory (or Hugging Face ``datasets``), and the embedded
synthetic corpus.

A corpus is three lists of lines (train, valid, test). Word-level tokenisation follows the
PyTorch ``word_language_model`` example: ``line.split()`` plus one ``<eos>`` per line, so
WikiText-2 has 2,088,628 / 217,646 / 245,569 tokens and a 33,278-word vocabulary.

The data directory is searched in this order: the ``data_dir`` argument, ``$QTF_DATA_DIR``,
``./data``, ``../shared/data``; each may hold ``<name>/train.txt`` or be that folder itself.
The corpus text is never copied into this repository.
"""

from __future__ import annotations

import os
from pathlib import Path

from .base import SPLITS, Corpus
from .synthetic import synthetic_corpus

__all__ = [
    "DATASETS",
    "SPLITS",
    "Corpus",
    "DataNotFoundError",
    "candidate_dirs",
    "find_data_dir",
    "load_corpus",
]

#: Known corpora: local folder name → Hugging Face ``datasets`` (path, config).
DATASETS = {
    "wikitext-2": ("Salesforce/wikitext", "wikitext-2-v1"),
    "wikitext-2-raw": ("Salesforce/wikitext", "wikitext-2-raw-v1"),
}


class DataNotFoundError(FileNotFoundError):
    """No data directory holds the corpus; the message lists every place tried and the fix."""


def candidate_dirs(data_dir: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The data directories searched, in order, each with where it came from."""
    out: list[tuple[str, Path]] = []
    if data_dir is not None:
        out.append(("--data-dir", Path(data_dir)))
    env = os.environ.get("QTF_DATA_DIR")
    if env:
        out.append(("$QTF_DATA_DIR", Path(env)))
    out.append(("./data", Path("data")))
    out.append(("../shared/data", Path("..") / "shared" / "data"))
    return out


def _holds(path: Path, name: str) -> Path | None:
    for cand in (path / name, path):
        if all((cand / f"{s}.txt").is_file() for s in SPLITS):
            return cand
    return None


def find_data_dir(name: str = "wikitext-2", data_dir: str | os.PathLike | None = None) -> Path:
    """The folder holding ``train.txt``, ``valid.txt`` and ``test.txt`` of corpus ``name``.

    Raises :class:`DataNotFoundError` listing every place tried.
    """
    tried = []
    for origin, path in candidate_dirs(data_dir):
        found = _holds(path, name)
        if found is not None:
            return found.resolve()
        tried.append(f"  {origin}: {path.resolve()}/{name}/{{train,valid,test}}.txt")
    raise DataNotFoundError(_not_found_message(name, tried, None))


def _not_found_message(name: str, tried: list[str], hf_error: str | None) -> str:
    lines = [f"corpus {name!r} not found. Tried:", *tried]
    if hf_error is not None:
        lines.append(f"  Hugging Face datasets: {hf_error}")
    lines += [
        "Fix: pass --data-dir DIR (or set QTF_DATA_DIR=DIR) where DIR contains "
        f"{name}/train.txt, valid.txt and test.txt (one line of text per line); or install "
        "`datasets` on a machine with network access to fetch it from the Hugging Face Hub.",
    ]
    return "\n".join(lines)


def _read_lines(path: Path) -> list[str]:
    with open(path, encoding="utf-8") as f:
        return f.read().splitlines()


def _from_hf(name: str) -> tuple[dict[str, list[str]], str]:
    import datasets

    path, config = DATASETS[name]
    ds = datasets.load_dataset(path, config)
    split_names = {"train": "train", "valid": "validation", "test": "test"}
    # HF stores each line with its trailing newline; strip it to match the local files.
    return (
        {s: [t.rstrip("\n") for t in ds[hf]["text"]] for s, hf in split_names.items()},
        f"huggingface:{path}/{config}",
    )


def load_corpus(
    name: str = "wikitext-2",
    data_dir: str | os.PathLike | None = None,
    use_hf: bool = True,
) -> Corpus:
    """Load corpus ``name`` (``"wikitext-2"``, ``"wikitext-2-raw"``, or ``"synthetic"``).

    Local files are searched first (see the module docstring); when none is found and
    ``use_hf`` is set and the ``datasets`` package is installed, the Hugging Face Hub is tried
    (it downloads). Otherwise :class:`DataNotFoundError` lists every place tried.

    Example:
        >>> corpus = load_corpus("synthetic")
        >>> corpus.source, len(corpus.train) > 1000
        ('synthetic:seed=0', True)
    """
    if name == "synthetic":
        return synthetic_corpus()
    try:
        folder = find_data_dir(name, data_dir)
    except DataNotFoundError:
        if name not in DATASETS:
            raise
        tried = [
            f"  {o}: {p.resolve()}/{name}/{{train,valid,test}}.txt"
            for o, p in candidate_dirs(data_dir)
        ]
        if not use_hf:
            raise
        try:
            splits, source = _from_hf(name)
        except ImportError:
            raise DataNotFoundError(
                _not_found_message(name, tried, "not installed (pip install datasets)")
            ) from None
        except Exception as e:  # offline, hub errors
            msg = f"failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})"
            raise DataNotFoundError(_not_found_message(name, tried, msg)) from None
        return Corpus(name, splits["train"], splits["valid"], splits["test"], source)
    splits = {s: _read_lines(folder / f"{s}.txt") for s in SPLITS}
    return Corpus(name, splits["train"], splits["valid"], splits["test"], str(folder))
