"""The progress bar of long compression work (calibration passes, perplexity windows)."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

__all__ = ["progress_bar"]


def progress_bar(enabled: bool, *fields: ProgressColumn) -> Progress:
    """A rich progress bar on stderr: the task's description, the bar, done / total,
    ``fields`` (extra columns), elapsed time and ETA; shows nothing when not ``enabled``.

    Example:
        >>> with progress_bar(False) as bar:
        ...     task = bar.add_task("blocks", total=3)
        ...     bar.update(task, advance=3)
        >>> float(bar.tasks[0].completed)
        3.0
    """
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        *fields,
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=not enabled,
    )
