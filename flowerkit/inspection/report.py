"""The inspection's files, all inside one folder:

    inspection.json   every finding, with paths, scores and thresholds
    inspection.html   thumbnails of each duplicate group and suspect label
    suspects.png      a contact sheet of the top suspects
    exclude.txt       what the checks are sure of (exact copies' extra files, label
                      conflicts), for `train --exclude`
    review.txt        the ranked label suspects with their scores, to look at
    thumbnails/       the page's images (links are relative, inside the folder)

The page and the terminal table are capped (classes, groups, images per group,
suspects), each saying how many it left out, so that they stay fast and
readable at 10^5 images and 1,000 classes; inspection.json keeps everything.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from flowerkit.data.decode import decode_image
from flowerkit.report.artifacts import json_text

THUMBNAIL = 128
SHOWN_SUSPECTS = 60
SHEET_SUSPECTS = 24
SHOWN_GROUPS = 100  # duplicate groups on the page, label conflicts first
SHOWN_GROUP_IMAGES = 12  # images of one group on the page
SHOWN_CLASSES = 100  # classes in the page's table (the smallest); the terminal shows 30


def write_report(findings: dict, output_dir, top: int = SHOWN_SUSPECTS) -> dict[str, Path]:
    """Writes the files above; returns their paths by name."""
    output = Path(output_dir)
    (output / "thumbnails").mkdir(parents=True, exist_ok=True)
    private = findings["_private"]
    public = {k: v for k, v in findings.items() if not k.startswith("_")}
    index, names = private["index"], private["names"]
    position = {name: i for i, name in enumerate(names)}
    thumbs: dict[str, str] = {}

    def thumbnail(name: str) -> str:
        if name not in thumbs:
            relative = f"thumbnails/{len(thumbs):05d}.jpg"
            _save_thumbnail(index.images[position[name]], output / relative)
            thumbs[name] = relative
        return thumbs[name]

    paths = {"json": output / "inspection.json", "html": output / "inspection.html",
             "sheet": output / "suspects.png", "exclude": output / "exclude.txt",
             "review": output / "review.txt"}
    paths["json"].write_text(json_text(public, ensure_ascii=False) + "\n", encoding="utf-8")
    paths["html"].write_text(_page(public, thumbnail, top), encoding="utf-8")
    suspects = public["label_issues"].get("suspects", [])[:SHEET_SUSPECTS]
    _contact_sheet(suspects, index, position, paths["sheet"])
    paths["exclude"].write_text(_exclude_file(public), encoding="utf-8")
    paths["review"].write_text(_review_file(public), encoding="utf-8")
    return paths


def _save_thumbnail(image, path: Path) -> None:
    from PIL import Image

    pixels = decode_image(image, THUMBNAIL).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=85)


def _figure(items, thumbnail) -> str:
    cells = []
    for src, caption in items:
        cells.append(f'<figure><img src="{html.escape(src)}" width="{THUMBNAIL}" '
                     f'height="{THUMBNAIL}" alt=""><figcaption>{caption}</figcaption></figure>')
    return '<div class="row">' + "".join(cells) + "</div>"


def _page(findings: dict, thumbnail, top: int) -> str:
    e = html.escape
    balance = findings["balance"]
    duplicates = findings["duplicates"]
    issues = findings["label_issues"]
    parts = [
        "<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
        f"<title>flowerkit inspection: {e(findings['source'])}</title>",
        "<style>body{font-family:sans-serif;margin:1em}figure{display:inline-block;margin:4px;"
        "width:140px;font-size:11px;vertical-align:top;word-break:break-all}"
        ".row{border-bottom:1px solid #ccc;padding:4px}.conflict{background:#fee}"
        "table{border-collapse:collapse}td,th{padding:2px 8px;border:1px solid #ccc}</style>",
        "</head>", "<body>",
        f"<h1>Inspection of {e(findings['source'])}</h1>",
        f"<p>{findings['images']} images, {len(findings['class_names'])} classes; "
        f"imbalance ratio {balance['imbalance_ratio']:.2f} (largest {e(balance['largest'])}, "
        f"smallest {e(balance['smallest'])}).</p>",
        "<h2>Classes</h2>", *_class_table(balance["counts"], SHOWN_CLASSES),
        "<h2>Loader</h2>", "<ul>",
        *[f"<li>{e(m)}</li>" for m in findings["loader"]["skipped"]],
        f"<li>modes: {e(json.dumps(findings['loader']['modes']))}</li>",
        f"<li>smaller than the model's input ({findings['image_size']} px): "
        f"{findings['loader']['smaller_than_input']}</li>", "</ul>",
        f"<h2>Duplicates: {duplicates['group_count']} groups "
        f"({duplicates['conflict_groups']} across classes)</h2>",
        f"<p>{duplicates['groups_crossing_random_split']} group(s) were split across training and "
        "validation by a random split; the duplicate-aware split keeps each on one side.</p>",
    ]
    shown = shown_groups(duplicates["groups"], SHOWN_GROUPS)
    for group in shown:
        images = group["images"]
        items = [(thumbnail(i["path"]), f"{e(i['path'])}<br>class {e(i['label'])}")
                 for i in images[:SHOWN_GROUP_IMAGES]]
        row = _figure(items, thumbnail)
        label = f"{group['kind']}{', label conflict' if group['conflict'] else ''}"
        if len(images) > SHOWN_GROUP_IMAGES:
            label += f"; {len(images)} images, {len(images) - SHOWN_GROUP_IMAGES} not shown"
        css = ' class="conflict"' if group["conflict"] else ""
        parts.append(f"<section{css}><h3>{e(label)}</h3>{row}</section>")
    if len(duplicates["groups"]) > len(shown):
        parts.append(f"<p>{len(duplicates['groups']) - len(shown):,} more groups not shown "
                     '(all in <a href="inspection.json">inspection.json</a>).</p>')
    if issues.get("available"):
        parts += [
            f"<h2>Likely label errors: {issues['suspect_count']} suspects</h2>",
            f"<p>{e(issues['method'])}; {issues['folds']} folds; out-of-fold accuracy "
            f"{issues['out_of_fold_accuracy']:.3f}. Showing the first {min(top, issues['suspect_count'])}, "
            f"most suspect first; {max(issues['suspect_count'] - top, 0):,} not shown.</p>",
        ]
        items = [
            (thumbnail(s["path"]), f"{e(s['path'])}<br>given {e(s['given'])} "
             f"({s['given_probability']:.2f})<br>predicted {e(s['predicted'])} "
             f"({s['predicted_probability']:.2f})")
            for s in issues["suspects"][:top]
        ]
        parts.append(_figure(items, thumbnail))
    else:
        parts.append(f"<h2>Likely label errors</h2><p>{e(issues.get('reason', ''))}</p>")
    parts += ['<p>Contact sheet: <a href="suspects.png">suspects.png</a>; all findings: '
              '<a href="inspection.json">inspection.json</a>; '
              '<a href="exclude.txt">exclude.txt</a> (exact copies, conflicts) for '
              '<code>train --exclude</code>; <a href="review.txt">review.txt</a>: the suspects to look at.</p>',
              "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def shown_groups(groups: list[dict], count: int) -> list[dict]:
    """The first `count` groups, label conflicts first, each kind in its order."""
    conflicts = [g for g in groups if g["conflict"]][:count]
    return conflicts + [g for g in groups if not g["conflict"]][: count - len(conflicts)]


def _smallest_classes(counts: dict[str, int], count: int) -> list[tuple[str, int]]:
    """Every class in its order if there are at most `count`, else the
    `count` with fewest images, fewest first."""
    if len(counts) <= count:
        return list(counts.items())
    return sorted(counts.items(), key=lambda item: item[1])[:count]


def _class_table(counts: dict[str, int], count: int) -> list[str]:
    e = html.escape
    rows = _smallest_classes(counts, count)
    lines = ["<table><tr><th>class</th><th>images</th></tr>",
             *[f"<tr><td>{e(n)}</td><td>{c}</td></tr>" for n, c in rows], "</table>"]
    if len(counts) > len(rows):
        lines.append(f"<p>The {len(rows)} smallest of {len(counts):,} classes; the others: inspection.json.</p>")
    return lines


def _contact_sheet(suspects, index, position, path: Path) -> None:
    columns = 6
    rows = max(1, -(-len(suspects) // columns))
    figure = Figure(figsize=(columns * 2.2, rows * 2.6))
    axes = np.atleast_1d(figure.subplots(rows, columns)).ravel()
    for axis in axes:
        axis.axis("off")
    for axis, suspect in zip(axes, suspects):
        axis.imshow(decode_image(index.images[position[suspect["path"]]], THUMBNAIL).astype(np.uint8))
        axis.set_title(f"{_caption_path(suspect['path'])}\ngiven {suspect['given']} {suspect['given_probability']:.2f}"
                       f"\npred {suspect['predicted']} {suspect['predicted_probability']:.2f}", fontsize=7)
    if not suspects:
        axes[0].text(0.5, 0.5, "no suspects", ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=80)


def _exclude_file(findings: dict) -> str:
    """Only what the checks are sure of: the extra files of exact copies
    within one class (the first is kept), and every image of a label conflict."""
    lines = ["# flowerkit inspect: paths for `flowerkit train --exclude FILE` (relative to",
             f"# {findings['root']}): only what the checks are sure of; suspects are in review.txt.",
             "# exact copies within a class (the first of each group is kept):"]
    groups = findings["duplicates"]["groups"]
    for group in groups:
        if group.get("kind") == "exact" and not group["conflict"]:
            lines += [image["path"] for image in group["images"][1:]]
    lines.append("# label conflicts (the same image in more than one class):")
    for group in groups:
        if group["conflict"]:
            lines += [image["path"] for image in group["images"]]
    return "\n".join(lines) + "\n"


def _review_file(findings: dict) -> str:
    """The ranked label suspects with their scores, for a person to look at
    (copy a line into exclude.txt, or into a relabel CSV, once checked)."""
    lines = ["# flowerkit inspect: likely label errors, most suspect first; look before acting.",
             "# p_given: out-of-fold probability of the given label; tab-separated columns.",
             "path\tgiven\tp_given\tpredicted\tp_predicted"]
    for s in findings["label_issues"].get("suspects", []):
        lines.append(f"{s['path']}\t{s['given']}\t{s['given_probability']:.3f}\t"
                     f"{s['predicted']}\t{s['predicted_probability']:.3f}")
    return "\n".join(lines) + "\n"


def _caption_path(path: str, width: int = 28) -> str:
    """The class folder and the file name's start and end, its middle cut:
    `roses/1043…80_n.jpg`, so the file can be found from the caption."""
    if len(path) <= width:
        return path
    folder, _, name = path.rpartition("/")
    room = max(width - len(folder) - 2, 9)  # less the "/" and the "…"
    start = room // 2
    return f"{folder}/" * bool(folder) + f"{name[:start]}…{name[-(room - start):]}"


def _as_train_counts(duplicates: dict) -> str:
    hash_only = duplicates.get("hash_only")
    if not hash_only or duplicates.get("checks") == "hashes":
        return ""
    return (f" ({hash_only['group_count']} groups, {hash_only['duplicate_images']} extra copies "
            "by hashes alone, as train counts)")


def terminal_table(findings: dict, rows: int = 10) -> str:
    """A short summary table for the terminal."""
    balance, duplicates, issues = findings["balance"], findings["duplicates"], findings["label_issues"]
    classes = _smallest_classes(balance["counts"], 30)
    width = max(len(n) for n in [*dict(classes), "class"])
    left_out = len(balance["counts"]) - len(classes)
    lines = [f"{'class':<{width}}  images", *[f"{n:<{width}}  {c:6d}" for n, c in classes],
             *([f"... {left_out} larger classes (all in inspection.json)"] if left_out else []),
             f"imbalance ratio {balance['imbalance_ratio']:.2f}"
             + (" (class_weight auto weighs the classes)" if balance["auto_class_weight"] else ""),
             f"duplicate groups {duplicates['group_count']} ({duplicates['exact_groups']} exact) by "
             f"{duplicates.get('checks', 'hashes')}{_as_train_counts(duplicates)}, label conflicts "
             f"{duplicates['conflict_groups']}, crossing a random split "
             f"{duplicates['groups_crossing_random_split']}"]
    if issues.get("available"):
        shown = issues["suspects"][:rows]
        lines.append(f"label suspects {issues['suspect_count']} (out-of-fold accuracy "
                     f"{issues['out_of_fold_accuracy']:.3f}); top {len(shown)}, least likely first "
                     "(p(given): the out-of-fold probability of the label the file has):")
        moves = [f"{s['given']} -> {s['predicted']}" for s in shown]
        move_width = max(len(m) for m in [*moves, "given -> predicted"])
        lines.append(f"  {'p(given)':>8}  {'given -> predicted':<{move_width}}  file")
        for s, move in zip(shown, moves):
            lines.append(f"  {s['given_probability']:8.2f}  {move:<{move_width}}  {s['path']}")
    return "\n".join(lines)
