"""What a corpus is: three lists of lines and where they came from (shared by the loaders)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SPLITS", "Corpus"]

SPLITS = ("train", "valid", "test")


@dataclass
class Corpus:
    """Lines of each split, and where they came from (``source``)."""

    name: str
    train: list[str]
    valid: list[str]
    test: list[str]
    source: str

    def split(self, name: str) -> list[str]:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return getattr(self, name)

    def num_tokens(self, split: str) -> int:
        """Word-level tokens of a split: words + one ``<eos>`` per line."""
        return sum(len(line.split()) + 1 for line in self.split(split))
