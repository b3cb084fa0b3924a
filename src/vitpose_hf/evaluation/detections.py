"""COCO detection-result files -> person boxes to predict in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any


from ..boxes import box_array
from ..data.coco import read_json


def load_detection_boxes(
    path_or_list: str | Path | Sequence[Mapping[str, Any]],
    score_threshold: float = 0.0,
    image_paths: Mapping[int, str | Path] | None = None,
    source: str = "<detections>",
) -> list[dict]:
    """Person boxes of a COCO detection-results file -> samples for `predict_keypoints`.

    Entries are `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`; only category 1 (person) with a score
    of at least `score_threshold` is kept, as the original does. `image_paths` maps image ids to files (without it,
    samples have `image_path` None). Bad entries raise an error naming the file and the entry.
    """
    if isinstance(path_or_list, (str, Path)):
        source = str(path_or_list)
        entries = read_json(source, "Detection file")
    else:
        entries = path_or_list
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"Detection file {source!r} must hold a list of detections, got {type(entries).__name__}.")
    samples = []
    for position, entry in enumerate(entries):
        where = f"Detection entry {position} in {source!r}"
        if not isinstance(entry, Mapping) or any(key not in entry for key in ("image_id", "bbox", "score")):
            raise ValueError(f"{where} needs 'image_id', 'bbox' and 'score', got {entry!r}.")
        if entry.get("category_id", 1) != 1:
            continue
        box = box_array([entry["bbox"]], where.lower())[0].tolist()
        try:
            score = float(entry["score"])
            image_id = int(entry["image_id"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: image_id and score must be numbers, got {entry!r}.") from None
        if score < score_threshold:
            continue
        if image_paths is not None and image_id not in image_paths:
            raise ValueError(f"{where}: image id {image_id} is not in the ground-truth annotations.")
        samples.append({
            "image_path": str(image_paths[image_id]) if image_paths is not None else None,
            "image_id": image_id,
            "bbox": box,
            "score": score,
            "detection_index": position,
        })
    return samples

