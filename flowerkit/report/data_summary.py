"""One line for the start of `train`: what the check before the split found
(the `data_inspection` record of `flowerkit.data`). Below training, which prints it."""

from __future__ import annotations


def summary_line(record: dict) -> str:
    parts = [f"data: {record.get('images', '?')} images"]
    if "imbalance_ratio" in record:
        parts.append(f"imbalance {record['imbalance_ratio']:.2f}x")
    if "duplicate_groups" in record:
        parts.append(f"{record['duplicate_groups']} duplicate group(s) "
                     f"({record['duplicate_images']} extra copies; by image hashes)")
    if record.get("groups_kept_together"):
        parts.append(f"{record['groups_kept_together']} kept on one side of the split")
    if record.get("conflict_groups"):
        excluded = record.get("conflict_images_excluded")
        parts.append(f"{record['conflict_groups']} label conflict(s)"
                     + (f", {excluded} image(s) left out" if excluded else ", kept"))
    curation = record.get("curation") or {}
    if curation:
        parts.append(f"{curation['excluded']} excluded, {curation['relabelled']} relabelled by the recipe")
    return "; ".join(parts) + " (details: metrics.json data_inspection; flowerkit inspect for more)"
