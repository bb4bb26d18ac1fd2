"""Progress on long passes: what is being done, how far, how fast.

On a terminal a stage is a labelled tqdm bar with its rate and ETA; with
`quiet=True`, or when the stream is not a terminal (a log file, CI), each
stage prints one line when it ends, so a log reads as a list of stages:

    with progress.stage("Hashing images", total=len(paths), unit="image") as bar:
        for path in paths:
            ...
            bar.update()

    for path in progress.track(paths, "Indexing photos", unit="file"):
        ...

Nothing here is global: every call says where it writes and whether it is
quiet, so a library user who wants silence passes `quiet=True` (or a stream).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import IO, TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


# A stage answered from a cache ends in microseconds: its "rate" (billions of
# images a second) says nothing about the work, so none is printed below this.
RATE_FROM_SECONDS = 0.5


def _plural(unit: str, count: float) -> str:
    return unit if count == 1 or unit.endswith("s") else unit + "s"


class Stage:
    """One labelled pass. Use as a context manager; `update(n)` counts work done."""

    def __init__(
        self,
        label: str,
        total: int | None = None,
        unit: str = "image",
        quiet: bool | None = None,
        stream: IO[str] | None = None,
    ):
        self.label = label
        self.total = total
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        if quiet is None:
            quiet = not _is_terminal(self.stream)
        self.quiet = quiet
        self.count = 0
        self.seconds = 0.0
        self._start = 0.0
        self._bar = None

    def __enter__(self) -> Stage:
        self._start = time.perf_counter()
        if not self.quiet:
            self._bar = tqdm(
                total=self.total,
                desc=self.label,
                unit=f" {self.unit}",
                file=self.stream,
                dynamic_ncols=True,
                leave=True,
                smoothing=0.1,
            )
        return self

    def update(self, n: int = 1) -> None:
        self.count += n
        if self._bar is not None:
            self._bar.update(n)

    def __exit__(self, exc_type, exc, tb) -> None:
        self.seconds = time.perf_counter() - self._start
        if self._bar is not None:
            self._bar.close()
            return
        if exc_type is not None:
            return
        print(self.summary(), file=self.stream, flush=True)

    def summary(self) -> str:
        """`Hashing images: 5,100 images in 2.0 s (2,550 images/s)`, or seconds
        per unit below one a second; no rate for a stage shorter than
        `RATE_FROM_SECONDS`."""
        unit = _plural(self.unit, self.count)
        line = f"{self.label}: {self.count:,} {unit} in {self.seconds:.1f} s"
        if self.count and self.seconds >= RATE_FROM_SECONDS:
            rate = self.count / self.seconds
            if rate >= 1:
                line += f" ({rate:,.0f} {_plural(self.unit, rate)}/s)"
            else:  # slow units (folds, exports): "0 folds/s" says nothing
                line += f" ({self.seconds / self.count:,.1f} s per {self.unit})"
        return line


def stage(
    label: str,
    total: int | None = None,
    unit: str = "image",
    quiet: bool | None = None,
    stream: IO[str] | None = None,
) -> Stage:
    """A labelled progress stage; `quiet=None` shows a bar only on a terminal."""
    return Stage(label, total=total, unit=unit, quiet=quiet, stream=stream)


def track(
    items: Iterable[T],
    label: str,
    total: int | None = None,
    unit: str = "image",
    quiet: bool | None = None,
    stream: IO[str] | None = None,
) -> Iterator[T]:
    """Yield `items`, counting each one in a labelled stage."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    with stage(label, total=total, unit=unit, quiet=quiet, stream=stream) as bar:
        for item in items:
            yield item
            bar.update()


def _is_terminal(stream: IO[str]) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
