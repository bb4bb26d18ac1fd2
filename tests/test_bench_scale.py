"""The scale benchmark's pieces at tiny size: the synthetic folder with its
planted copies, and the growth figures its chart and closing note quote."""

import contextlib
import io
import json

import pytest
from PIL import Image

from bench import scale, scale_data

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


def test_a_synthetic_folder_has_its_classes_distinct_images_and_planted_copies(tmp_path, monkeypatch):
    monkeypatch.setenv("FLOWERKIT_SCALE_DIR", str(tmp_path))
    folder = scale_data.generate(400, processes=1)
    files = scale.image_files(folder / "images")
    assert len(files) == 400 and len({open(f, "rb").read() for f in files}) == 400
    assert sorted(p.name for p in (folder / "images").iterdir()) == ["class0000", "class0001", "class0002", "class0003"]
    pairs = json.loads((folder / "planted.json").read_text())["pairs"]
    assert len(pairs) == 4
    assert sum(a.split("/")[0] != b.split("/")[0] for a, b in pairs) == 2  # half in another class
    for original, copy in pairs:
        with Image.open(folder / "images" / original) as big, Image.open(folder / "images" / copy) as small:
            # Cropped up to 10% a side, then resized to 60-90%.
            assert 0.6 * 0.8 * big.width - 2 <= small.width <= 0.9 * big.width + 1
    assert scale_data.generate(400).samefile(folder)  # complete: nothing redone


def test_growth_is_the_cost_ratio_and_log_log_slope_between_sizes(tmp_path):
    sizes = {
        str(n): scale.summarise(n, {"decode": {"seconds": n / 1000, "peak_rss_bytes": 2**30},
                                    "decode_again": {"seconds": n / 1000 * 1.2},
                                    "load_warm": {"seconds": (n / 1000) ** 2}})
        for n in (10_000, 100_000)
    }
    assert sizes["10000"]["over_decode"]["load_warm"] == pytest.approx(100 / 11)
    assert sizes["10000"]["peak_rss_gib"] == {"decode": 1.0}
    growth = scale.growth(sizes)
    assert growth["decode"]["10000_to_100000"] == {"ratio": pytest.approx(10), "slope": pytest.approx(1)}
    assert growth["load_warm"]["10000_to_100000"]["slope"] == pytest.approx(2)
    scale.chart(sizes, tmp_path / "scale.png")
    assert (tmp_path / "scale.png").read_bytes()[:4] == b"\x89PNG"


def test_the_results_page_has_a_row_per_size(tmp_path):
    from bench.report import scale_section

    sizes = {"10000": scale.summarise(10_000, {"decode": {"seconds": 8.0, "peak_rss_bytes": 2**29},
                                               "load_cold": {"seconds": 40.0, "peak_rss_bytes": 2**30},
                                               "load_warm": {"seconds": 2.5},
                                               "train_new_folder": {"seconds": 40.0, "first_epoch_seconds": 28.0},
                                               "train_again": {"seconds": 30.0, "first_epoch_seconds": 21.5}})}
    (tmp_path / "scale.json").write_text(json.dumps({"sizes": sizes, "note": "one run"}))
    lines = scale_section([tmp_path / "inspect_cost.json", tmp_path / "scale.json"])
    assert lines[0] == "## Scale (`bench/scale.py`)"
    assert lines[4] == "| 10,000 | 8.0 | 5.00 | 0.31 |  |  |  | 2.5 | –, 28.0, 21.5 | 1.00 |"
    assert scale_section([tmp_path / "other.json"]) == []


def test_the_first_epoch_is_timed_at_its_line_and_the_output_passes_through():
    written = io.StringIO()
    times = iter([13.5, 99.0])
    lines = scale.EpochLines(written, started=10.0, clock=lambda: next(times))
    with contextlib.redirect_stdout(lines):
        print("Indexing images: 2,000 images in 0.3 s")
        print("26/26 - 42s - 2s/step - accuracy: 0.5 - loss: 1.2")
        print("26/26 - 40s - 2s/step - accuracy: 0.6 - loss: 1.1")
    assert lines.first_epoch_seconds == 3.5
    assert written.getvalue().splitlines()[1].startswith("26/26 - 42s")


def test_photo_copies_are_planted_once_beside_the_colour_fields(tmp_path, monkeypatch):
    from tests.helpers import shared_path

    photos = shared_path("data/flower_photos")
    monkeypatch.setenv("FLOWERKIT_SCALE_DIR", str(tmp_path))
    folder = scale_data.generate(200, processes=1)
    record = scale_data.plant_photos(200, photos, originals=8)
    pairs = json.loads(record.read_text())["pairs"]
    assert len(scale.image_files(folder / "images")) == 200 + 16
    assert [p["cropped"] for p in pairs] == [True, True, True, False] * 2
    assert sum(a.split("/")[0] != b.split("/")[0] for a, b in (p["pair"] for p in pairs)) == 4
    for pair in pairs:
        original, copy = (folder / "images" / name for name in pair["pair"])
        source = photos / original.name.split("-")[1] / (original.name.split("-", 2)[2])
        assert original.read_bytes() == source.read_bytes()  # the photo itself
        with Image.open(original) as big, Image.open(copy) as small:
            assert 0.6 * 0.8 * big.width - 2 <= small.width <= 0.9 * big.width + 1
    assert scale_data.plant_photos(200, photos, originals=8) == record  # present: nothing added
    assert len(scale.image_files(folder / "images")) == 200 + 16


def test_planted_pairs_score_recall_and_precision_over_the_groups_they_touch():
    import numpy as np

    # Images 0-2 in one group (2 not planted), 3 and 4 apart, 5 and 6 a group of others.
    group_of = np.array([0, 0, 0, 3, 4, 5, 5])
    scores = scale.pair_scores([(0, 1), (3, 4)], group_of)
    assert scores == {"pairs": 2, "recall": 0.5, "precision": 1 / 3, "grouped_pairs": 3}
    assert scale.pair_scores([(3, 4)], group_of)["precision"] is None


def test_the_results_page_lists_the_planted_copies_found_at_each_size(tmp_path):
    from bench.report import scale_section

    found = {"images": 100_800, "image_size": 288, "feature_seconds": 600.4, "search_seconds": 12.25,
             "backend": "torch", "photos": {"pairs": 400, "recall": 0.995, "precision": 1.0},
             "colour_fields": {"pairs": 1000, "recall": 0.41, "precision": None},
             "images_grouped_differently": 0, "peak_rss_bytes": 3 * 2**30}
    sizes = {"100000": scale.summarise(100_000, {"decode": {"seconds": 20.0}, "planted_features": found,
                                                 "train_torch": {"first_epoch_seconds": 24.04},
                                                 "train_again_torch": {"first_epoch_seconds": 9.5},
                                                 "train_again": {"first_epoch_seconds": 11.0}})}
    photos = {"images": 3303, "rows": {"torch": {"first_epoch_seconds": 18.77}, "jax": {"first_epoch_seconds": 36.5}}}
    (tmp_path / "scale.json").write_text(json.dumps({"sizes": sizes, "train_on_the_photos": photos}))
    lines = scale_section([tmp_path / "scale.json"])
    assert lines[-2] == ("| 100,800 | torch | 288 | 600 | 12.2 | 0.995 / 1.000 (400) | – | 0.410 / – (1000) "
                         "| yes | 3.00 |")
    assert [line for line in lines if line.startswith("- ")] == [
        "- torch, 100,000 images: 24.0, –, 9.5", "- first run on the 3,303 shared photos instead: jax 36.5, torch 18.8"]
    assert "| 100,000 | 20.0 |" in lines[4] and lines[4].endswith("| 0.00 |")  # inspect's memory apart


def test_a_row_with_cached_features_keeps_the_time_of_the_pass_that_computed_them():
    computed = {"feature_cache": "computed", "feature_seconds": 1002.4, "date": "2026-12-07 10:58 UTC"}
    again = {"feature_cache": "hit", "feature_seconds": 3.1}
    kept = scale._feature_pass(again, computed)
    assert kept == {"feature_pass": {"seconds": 1002.4, "date": "2026-12-07 10:58 UTC"}}
    assert scale._feature_pass(again, {**again, **kept}) == kept  # and on, run after run
    assert scale._feature_pass(computed, {}) == {}
