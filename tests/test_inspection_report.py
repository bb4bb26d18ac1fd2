"""The inspection page and terminal table at scale: capped, saying what they left out."""

import time

import pytest

from flowerkit.inspection import report

pytestmark = pytest.mark.backend_independent  # run once, not per backend (tox.ini)


def _findings(images=100_000, classes=1000, groups=20_000, suspects=5_000) -> dict:
    names = [f"class{i:04d}" for i in range(classes)]
    counts = {name: images // classes + (i == 7) for i, name in enumerate(names)}
    counts["class0003"] = 5  # the smallest class comes first
    group_list = [
        {"kind": "near", "conflict": g % 100 == 99, "crosses_random_split": False,
         "images": [{"path": f"{names[g % classes]}/img{g}-{k}.jpg", "label": names[g % classes]}
                    for k in range(2 if g else 40)]}
        for g in range(groups)
    ]
    return {
        "source": "/data", "root": "/data", "image_size": 224, "images": images, "class_names": names,
        "balance": {"imbalance_ratio": 20.2, "largest": "class0007", "smallest": "class0003",
                    "counts": counts, "auto_class_weight": True},
        "loader": {"skipped": [], "modes": {"RGB": images}, "smaller_than_input": 0},
        "duplicates": {"groups": group_list, "group_count": groups, "conflict_groups": groups // 100,
                       "exact_groups": 0, "groups_crossing_random_split": 0},
        "label_issues": {
            "available": True, "suspect_count": suspects, "method": "out-of-fold", "folds": 5,
            "out_of_fold_accuracy": 0.8,
            "suspects": [{"path": f"class0001/s{i}.jpg", "given": "class0001", "predicted": "class0002",
                          "given_probability": 0.1, "predicted_probability": 0.9} for i in range(suspects)],
        },
    }


def test_the_page_at_a_hundred_thousand_images_is_capped_and_counts_what_it_left_out():
    findings = _findings()
    thumbnails = []

    def thumbnail(name):
        thumbnails.append(name)
        return f"thumbnails/{len(thumbnails):05d}.jpg"

    started = time.perf_counter()
    page = report._page(findings, thumbnail, report.SHOWN_SUSPECTS)
    assert time.perf_counter() - started < 5  # a thumbnail per image would take hours
    # 100 groups of 2 (label conflicts first: there are 200), then 60 suspects.
    assert len(thumbnails) == 100 * 2 + 60
    assert page.count("label conflict") == 100 and "40 images" not in page
    assert "19,900 more groups not shown" in page
    assert "Showing the first 60, most suspect first; 4,940 not shown." in page
    assert "The 100 smallest of 1,000 classes" in page and page.count("<tr>") == 101
    assert page.index("<td>class0003</td><td>5</td>") < page.index("<td>class0000</td>")


def test_a_large_group_shows_its_first_images_and_its_size():
    findings = _findings(images=1000, classes=5, groups=3, suspects=0)
    page = report._page(findings, lambda name: "thumbnails/x.jpg", report.SHOWN_SUSPECTS)
    assert "near; 40 images, 28 not shown" in page
    assert "more groups not shown" not in page and "smallest of" not in page


def test_the_terminal_table_lists_the_thirty_smallest_classes():
    lines = report.terminal_table(_findings()).splitlines()
    assert lines[1].split() == ["class0003", "5"]
    assert "... 970 larger classes (all in inspection.json)" in lines
    assert len(lines) < 50
