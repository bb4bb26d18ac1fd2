"""flowerkit.progress: a labelled bar on a terminal, one line per stage otherwise."""

from __future__ import annotations

import io

import pytest

from flowerkit import progress

pytestmark = pytest.mark.backend_independent


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_not_a_terminal_prints_one_line_per_stage():
    stream = io.StringIO()
    with progress.stage("Hashing images", total=3, stream=stream) as bar:
        for _ in range(3):
            bar.update()
    with progress.stage("Indexing", unit="file", stream=stream) as bar:
        bar.update(1)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("Hashing images: 3 images in ")
    assert "images/s" in lines[0]
    assert lines[1].startswith("Indexing: 1 file in ")


def test_quiet_on_a_terminal_is_still_one_line():
    stream = _Terminal()
    list(progress.track(range(5), "Decoding", stream=stream, quiet=True))
    assert stream.getvalue().count("\n") == 1
    assert stream.getvalue().startswith("Decoding: 5 images in ")


def test_a_terminal_gets_a_labelled_bar_with_rate():
    stream = _Terminal()
    items = list(progress.track(range(4), "Caching features", stream=stream))
    assert items == [0, 1, 2, 3]
    text = stream.getvalue()
    assert "Caching features" in text
    assert "4/4" in text
    assert "image/s" in text or "s/ image" in text


def test_a_failed_stage_prints_no_summary():
    stream = io.StringIO()
    with pytest.raises(RuntimeError):
        with progress.stage("Hashing", total=2, stream=stream) as bar:
            bar.update()
            raise RuntimeError("disk gone")
    assert stream.getvalue() == ""
