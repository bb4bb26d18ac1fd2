"""flowerkit.inspection without a model: hashes and duplicate groups on a
planted folder, the group-aware split, class weights, out-of-fold label
suspects, the CSV source, exclude/relabel, and the HTML report."""

import argparse
import html.parser
import shutil
from pathlib import Path

import numpy as np
import pytest
from tests.helpers import shared_path

from flowerkit import FlowerkitError, FlowerkitWarning
from flowerkit.data.sources import ImageIndex, index_folder, index_source, split_index
from flowerkit.data.splitting import curate, group_split
from flowerkit.data.balance import class_weights
from flowerkit.data.duplicates import find_duplicates
from flowerkit.data.hashing import hash_index
from flowerkit.inspection.label_issues import find_label_issues
from flowerkit.inspection.lists import read_path_list, read_relabel_csv


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Three classes of real photos (the first twice as many), with an exact
    copy, a resized re-encoded copy, and a cross-class copy planted."""
    from PIL import Image

    photos = shared_path("data/flower_photos")
    root = tmp_path_factory.mktemp("planted")
    for name, count in (("daisy", 12), ("roses", 6), ("tulips", 6)):
        (root / name).mkdir()
        for path in sorted((photos / name).iterdir())[:count]:
            shutil.copy(path, root / name / path.name)
    daisy = sorted((root / "daisy").iterdir())
    shutil.copy(daisy[0], root / "daisy" / "exact copy.jpg")
    with Image.open(daisy[1]) as image:
        image.resize((image.width * 2 // 3, image.height * 2 // 3)).save(
            root / "daisy" / "resized.jpg", quality=60)
    shutil.copy(daisy[2], root / "tulips" / "conflict.jpg")
    return root


@pytest.mark.backend_independent
def test_duplicates_and_conflicts_are_found_on_a_planted_folder(planted):
    index = index_folder(planted)
    hashes = hash_index(index)
    duplicates = find_duplicates(hashes, index.labels)
    named = [sorted(Path(index.images[m]).name for m in group) for group in duplicates.groups]
    daisy = sorted(p.name for p in (planted / "daisy").iterdir() if "copy" not in p.name
                   and p.name != "resized.jpg")
    assert sorted(named) == sorted([sorted([daisy[0], "exact copy.jpg"]),
                                    sorted([daisy[1], "resized.jpg"]),
                                    sorted([daisy[2], "conflict.jpg"])])
    assert duplicates.kinds.count("exact") == 2  # the copy and the cross-class copy
    conflict = [duplicates.groups[g] for g in duplicates.conflicts]
    assert [sorted(Path(index.images[m]).name for m in g) for g in conflict] == [
        sorted([daisy[2], "conflict.jpg"])]
    assert duplicates.duplicate_images == 3


@pytest.mark.backend_independent
def test_class_weights_balance_the_classes_and_auto_needs_imbalance():
    labels = [0] * 12 + [1] * 6 + [2] * 6
    weights = class_weights(labels, 3, "balanced")
    np.testing.assert_allclose(weights, [24 / 36, 24 / 18, 24 / 18])
    assert np.bincount(labels, weights=weights[labels]).tolist() == pytest.approx([8, 8, 8])
    np.testing.assert_allclose(class_weights(labels, 3, "auto"), weights)  # 2x >= 1.5x
    assert class_weights([0] * 7 + [1] * 5, 2, "auto") is None  # 1.4x
    assert class_weights(labels, 3, "none") is None


def _index(labels):
    labels = np.asarray(labels, np.int32)
    return ImageIndex(("a", "b", "c"), labels, tuple(f"/d/{i}.jpg" for i in range(len(labels))), "/d")


@pytest.mark.backend_independent
def test_group_split_keeps_groups_together_and_stays_stratified():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], [300, 200, 100])
    group_of = np.arange(len(labels))
    for start in range(0, 600, 7):  # groups of 2-4 within a class, some across
        group_of[start : start + rng.integers(2, 5)] = start
    index = _index(labels)
    for seed in range(5):
        train, validation, kept = group_split(index, 0.2, seed, group_of)
        side = {path: 1 for path in validation.images}
        groups = {}
        for position, path in enumerate(index.images):
            groups.setdefault(group_of[position], set()).add(side.get(path, 0))
        assert all(len(sides) == 1 for sides in groups.values())
        assert kept == sum(np.bincount(group_of) > 1)
        assert np.bincount(validation.labels).tolist() == [60, 40, 20]
        assert len(train) + len(validation) == 600


@pytest.mark.backend_independent
def test_group_split_without_groups_is_the_plain_split():
    index = _index(np.repeat([0, 1, 2], 20))
    train, validation, kept = group_split(index, 0.25, 3, np.arange(60))
    assert kept == 0 and validation.images == split_index(index, 0.25, 3)[1].images


@pytest.mark.backend_independent
def test_flipped_labels_rank_first_among_suspects():
    rng = np.random.default_rng(1)
    centres = rng.normal(0, 1, (4, 32))
    labels = np.repeat(np.arange(4), 100)
    features = centres[labels] + rng.normal(0, 0.8, (400, 32))
    flipped = rng.choice(400, 20, replace=False)
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + 1 + rng.integers(0, 3, 20)) % 4
    issues = find_label_issues(features, noisy, 4, folds=5)
    assert len(set(issues.top(40).tolist()) & set(flipped.tolist())) >= 18
    assert len(set(flipped.tolist()) & set(issues.suspects.tolist())) >= 14
    assert (issues.predicted[flipped] == labels[flipped]).mean() >= 0.9


@pytest.mark.backend_independent
@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_tiny_folder_of_one_group_per_class_trains_every_fold():
    """Each class one group of near copies: the groups spread over the folds
    (each fold's head learns from the others), no empty fold divides by 0."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 4)
    features = rng.normal(0, 1, (12, 8)) + labels[:, None]
    issues = find_label_issues(features, labels, 3, folds=2, groups=labels)
    assert np.isfinite(issues.self_confidence).all() and np.isfinite(issues.predicted_probability).all()
    assert not np.allclose(issues.self_confidence, 1 / 3)  # some fold learned
    # One group of everything: no other image to learn from, so no opinion.
    alone = find_label_issues(features, labels, 3, folds=2, groups=np.zeros(12, int))
    np.testing.assert_allclose(alone.self_confidence, 1 / 3)
    np.testing.assert_allclose(alone.predicted_probability, 1 / 3)
    assert len(alone.suspects) == 0


def _write_csv(path, rows):
    path.write_text("path,label\n" + "".join(f"{p},{l}\n" for p, l in rows), encoding="utf-8")
    return path


@pytest.mark.backend_independent
def test_csv_source_reads_paths_relative_to_it(image_folder):
    rows = [(f"{c}/{c}_{i:03d}.jpg", f"{c} ä") for c in ("red", "blue") for i in range(5)]
    index = index_source(str(_write_csv(image_folder / "list.csv", rows)))
    assert index.class_names == ("blue ä", "red ä")
    assert len(index) == 10 and all(Path(p).is_file() for p in index.images)
    assert index.labels.tolist() == [1] * 5 + [0] * 5


@pytest.mark.parametrize("rows, message", [
    ([("red/red_000.jpg", "red")], "one class"),
    ([], "lists no images"),
    ([("red/red_000.jpg", "red"), ("missing.jpg", "ghost")], r"label\(s\) \['ghost'\] have no readable"),
])
@pytest.mark.backend_independent
def test_csv_source_errors_are_clear(image_folder, rows, message):
    with pytest.warns(FlowerkitWarning) if "ghost" in message else _nothing():
        with pytest.raises(FlowerkitError, match=message):
            index_source(str(_write_csv(image_folder / "bad.csv", rows)))


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.backend_independent
def test_exclude_and_relabel_change_the_index_and_are_counted(image_folder, tmp_path):
    exclude = tmp_path / "exclude.txt"
    exclude.write_text("# comment\nred/red_000.jpg\n\nred/nothing.jpg\n")
    relabel = _write_csv(tmp_path / "relabel.csv", [("blue/blue_001.jpg", "green")])
    index = index_folder(image_folder)
    with pytest.warns(FlowerkitWarning, match=r"1 path\(s\) to exclude or relabel match no image"):
        curated, record = curate(index, read_path_list(exclude), read_relabel_csv(relabel))
    assert record == {"excluded": 1, "relabelled": 1, "unmatched": 1}
    assert len(curated) == 29 and not any(p.endswith("red_000.jpg") for p in curated.images)
    position = next(i for i, p in enumerate(curated.images) if p.endswith("blue_001.jpg"))
    assert curated.class_names[curated.labels[position]] == "green"
    with pytest.raises(FlowerkitError, match=r"class\(es\) \['purple'\]"):
        curate(index, (), {"blue/blue_001.jpg": "purple"})


@pytest.mark.backend_independent
def test_train_flags_put_exclude_and_relabel_into_the_recipe(tmp_path):
    from flowerkit.cli.train import add_arguments, recipe_from_args

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    (tmp_path / "x.txt").write_text("a/1.jpg\n")
    _write_csv(tmp_path / "r.csv", [("b/2.jpg", "c")])
    args = parser.parse_args(["--preset", "dense", "--exclude", str(tmp_path / "x.txt"),
                              "--relabel", str(tmp_path / "r.csv"), "--class-weight", "balanced"])
    recipe = recipe_from_args(args)
    assert (recipe.exclude, dict(recipe.relabel), recipe.class_weight) == (
        ("a/1.jpg",), {"b/2.jpg": "c"}, "balanced")
    from flowerkit.config.recipe import Recipe

    assert Recipe.from_dict(recipe.to_dict()) == recipe  # recipe.json keeps them


class _Links(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self.open = [], []

    def handle_starttag(self, tag, attrs):
        self.links += [value for name, value in attrs if name in ("src", "href")]
        if tag not in ("meta", "img", "br"):
            self.open.append(tag)

    def handle_endtag(self, tag):
        assert self.open and self.open.pop() == tag, f"unbalanced </{tag}>"


def test_report_page_is_valid_and_links_stay_inside_its_folder(planted, tmp_path):
    from flowerkit.inspection.report import terminal_table, write_report
    from flowerkit.inspection.runner import inspect_source
    from flowerkit.config.recipe import get_preset

    findings = inspect_source(get_preset("dense").replace(image_size=32), str(planted))
    paths = write_report(findings, tmp_path / "out")
    parser = _Links()
    parser.feed(paths["html"].read_text(encoding="utf-8"))
    parser.close()
    assert parser.open == []
    assert parser.links and all(not Path(link).is_absolute() and ".." not in link for link in parser.links)
    assert all((tmp_path / "out" / link).is_file() for link in parser.links)
    assert findings["duplicates"]["conflict_groups"] == 1
    assert "duplicate groups 3" in terminal_table(findings)
    # exclude.txt: one file of the exact pair and both conflict copies, not the
    # re-encoded near copy nor any suspect; review.txt: every suspect, ranked, scored.
    excluded = [line for line in paths["exclude"].read_text().splitlines() if not line.startswith("#")]
    pair = {"daisy/exact copy.jpg", f"daisy/{sorted(p.name for p in (planted / 'daisy').iterdir())[0]}"}
    assert len(excluded) == 3 and "tulips/conflict.jpg" in excluded and len(pair & set(excluded)) == 1
    assert "daisy/resized.jpg" not in excluded
    review = paths["review"].read_text().splitlines()
    assert review[2] == "path\tgiven\tp_given\tpredicted\tp_predicted"
    suspects = findings["label_issues"].get("suspects", [])
    assert [line.split("\t")[0] for line in review[3:]] == [s["path"] for s in suspects]
    if suspects:  # the table's columns say what the numbers are
        table = terminal_table(findings)
        assert "  p(given)  given -> predicted" in table
        assert f"{suspects[0]['given_probability']:8.2f}  {suspects[0]['given']} -> " in table


def test_train_and_inspect_count_the_same_duplicates(planted):
    """inspect confirms more near copies with backbone features; the counts by
    hashes alone, which train prints, are the same in both and named so."""
    from flowerkit.config.recipe import get_preset
    from flowerkit.data.loading import load_data
    from flowerkit.inspection.report import terminal_table
    from flowerkit.inspection.runner import inspect_source

    recipe = get_preset("mobilenet_v2_035").replace(image_size=32, weights=None)
    findings = inspect_source(recipe, str(planted), folds=2)
    train_record = load_data(recipe, str(planted)).inspection
    by_hashes = findings["duplicates"]["hash_only"]
    assert by_hashes == {"group_count": train_record["duplicate_groups"],
                         "duplicate_images": train_record["duplicate_images"]}
    assert findings["duplicates"]["checks"] == "hashes and backbone features"
    assert (f"({by_hashes['group_count']} groups, {by_hashes['duplicate_images']} extra copies by "
            "hashes alone, as train counts)") in terminal_table(findings)


@pytest.mark.backend_independent
def test_contact_sheet_captions_keep_class_and_file_name():
    from flowerkit.inspection.report import _caption_path

    assert _caption_path("roses/a.jpg") == "roses/a.jpg"
    caption = _caption_path("dandelion/2478018280_1be353ca8c_m.jpg")
    assert caption.startswith("dandelion/2478") and caption.endswith("_m.jpg") and "…" in caption
    assert len(caption) <= 28
