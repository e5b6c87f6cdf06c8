"""``python -m qtensorformer.cli``."""

from . import main

main()
