"""The files behind `train --exclude FILE` and `--relabel FILE` (Keras-free,
read before any backend starts)."""

from __future__ import annotations

import csv
from pathlib import Path

from flowerkit.errors import FlowerkitError


def read_path_list(path) -> tuple[str, ...]:
    """An exclude file: one path a line (relative to the source folder);
    blank lines and lines starting with # are ignored."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise FlowerkitError(f"Cannot read the exclude file {path}: {error.strerror or error}") from None
    return tuple(line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))


def read_relabel_csv(path) -> dict[str, str]:
    """A relabel file: CSV rows `path,label` (a header row `path,label` is optional)."""
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if row and not row[0].startswith("#")]
    except OSError as error:
        raise FlowerkitError(f"Cannot read the relabel file {path}: {error.strerror or error}") from None
    if rows and [cell.strip().lower() for cell in rows[0]] == ["path", "label"]:
        rows = rows[1:]
    bad = [n for n, row in enumerate(rows, 1) if len(row) != 2 or not row[0].strip() or not row[1].strip()]
    if bad:
        raise FlowerkitError(f"Relabel file {path}: row(s) {bad[:5]} are not 'path,label'.")
    return {row[0].strip(): row[1].strip() for row in rows}
