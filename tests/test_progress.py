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
    assert lines[1].startswith("Indexing: 1 file in ")


def _summary(count: int, seconds: float, unit: str = "image") -> str:
    done = progress.Stage("Hashing images", unit=unit, quiet=True)
    done.count, done.seconds = count, seconds
    return done.summary()


def test_a_stage_that_took_time_states_its_rate():
    assert _summary(5100, 2.0) == "Hashing images: 5,100 images in 2.0 s (2,550 images/s)"
    # Was "(0 folds/s)": inspect's label check on 100,000 images.
    assert _summary(5, 217.6, unit="fold") == "Hashing images: 5 folds in 217.6 s (43.5 s per fold)"


def test_a_stage_answered_from_a_cache_states_no_rate():
    # Was "(4,021,555,558 images/s)": 100,000 manifest rows in 25 microseconds.
    assert _summary(100_000, 0.000025) == "Hashing images: 100,000 images in 0.0 s"
    assert _summary(100_000, progress.RATE_FROM_SECONDS * 0.9).endswith(" in 0.5 s")
    assert _summary(100_000, progress.RATE_FROM_SECONDS).endswith("(200,000 images/s)")


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
