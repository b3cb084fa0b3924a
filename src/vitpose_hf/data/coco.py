"""Keypoint annotations -> one sample per person, exposed as a Hugging Face `datasets.Dataset`.

Every source (COCO, CrowdPose, OCHuman, any custom COCO-style set, and MPII / AI Challenger through
`converters.py`) ends up in the same sample schema:

    image_path (str), image_id (int), annotation_id (int), bbox ([x, y, w, h] floats, cleaned),
    keypoints (K x [x, y, visibility], COCO flags 0/1/2), dataset (str), dataset_index (int),
    sample_index (int, the row), image_width / image_height (int, 0 when unknown)

Which annotations become samples follows the original (mmpose 0.x `TopDownCocoDataset`): crowd annotations, those
without keypoints (`num_keypoints == 0` or all zeros) and boxes that are empty once clipped to the image are
skipped silently; those are the dataset's convention, not errors. Real problems (a missing image file, a keypoint
list of the wrong length, a malformed file) raise an error naming the file and the annotation id, or, with
`on_error="skip"`, are skipped, counted and reported. So are duplicated image or annotation ids, annotations of
images not listed, NaN or infinite boxes and keypoints, and file names leaving the image root (absolute or '..').
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from collections.abc import Callable
from typing import Any

import datasets
from pycocotools.coco import COCO

from ..keypoints import KeypointLayout, get_layout
from .converters import AnnotationError, aic_to_coco, mpii_to_coco
from .transforms import apply_to_rows

logger = logging.getLogger(__name__)

SAMPLE_FEATURES = datasets.Features({
    "image_path": datasets.Value("string"),
    "image_id": datasets.Value("int64"),
    "annotation_id": datasets.Value("int64"),
    "bbox": datasets.Sequence(datasets.Value("float32"), length=4),
    "keypoints": datasets.Sequence(datasets.Sequence(datasets.Value("float32"), length=3)),
    "dataset": datasets.Value("string"),
    "dataset_index": datasets.Value("int64"),
    "sample_index": datasets.Value("int64"),
    "image_width": datasets.Value("int64"),
    "image_height": datasets.Value("int64"),
})

# Skips that are the dataset's own convention (as in the original) vs. problems with the data.
CONVENTION_SKIPS = ("crowd", "no_keypoints", "empty_box", "other_category")


@dataclass
class LoadReport:
    """What loading kept and skipped, by reason; `errors` lists the first problems met under `on_error="skip"`."""

    annotation_file: str
    num_samples: int = 0
    skipped: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)

    @property
    def num_errors(self) -> int:
        return sum(n for reason, n in self.skipped.items() if reason not in CONVENTION_SKIPS)

    def __str__(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items())) or "none"
        return f"{self.annotation_file}: {self.num_samples} samples; skipped: {skipped}"


def read_json(path: str | Path, what: str = "Annotation file") -> Any:
    """A JSON file, or an error naming it (`what` says which file it is meant to be)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist.")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{what} {str(path)!r} is not valid JSON: {error}") from error


def _coco_index(data: Any, source: str) -> COCO:
    """A pycocotools COCO object from an already parsed dict, with structural errors named."""
    if not isinstance(data, dict):
        raise AnnotationError(f"Annotation file {source!r} must hold a JSON object with 'images' and 'annotations'.")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise AnnotationError(f"Annotation file {source!r} has no {key!r} list (not a COCO-format file?).")
    for position, image in enumerate(data["images"]):
        if not isinstance(image, dict) or "id" not in image or "file_name" not in image:
            raise AnnotationError(f"Annotation file {source!r}: image entry {position} needs 'id' and 'file_name'.")
    for position, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or any(key not in ann for key in ("id", "image_id", "category_id")):
            raise AnnotationError(
                f"Annotation file {source!r}: annotation entry {position} needs 'id', 'image_id' and 'category_id'."
            )
    data.setdefault("categories", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def _escapes_root(file_name: Any) -> bool:
    """True for a file name that would read outside the image root: absolute, or climbing with '..'."""
    name = str(file_name)
    return PurePosixPath(name).is_absolute() or PureWindowsPath(name).is_absolute() or ".." in PureWindowsPath(name).parts


def _clean_bbox(bbox: Any, width: int, height: int) -> list[float] | None:
    """The original's box sanitising: clip to the image (when its size is known); None when nothing is left."""
    x, y, w, h = (float(v) for v in bbox)
    x1, y1 = max(0.0, x), max(0.0, y)
    x2, y2 = x1 + max(0.0, w - 1), y1 + max(0.0, h - 1)
    if width > 0:
        x2 = min(width - 1.0, x2)
    if height > 0:
        y2 = min(height - 1.0, y2)
    if x2 <= x1 or y2 <= y1:
        return None
    return [x1, y1, x2 - x1, y2 - y1]


def coco_to_samples(
    data: dict | COCO,
    image_root: str | Path,
    layout: str | KeypointLayout = "coco",
    dataset_name: str | None = None,
    dataset_index: int = 0,
    on_error: str = "raise",
    check_images: bool = True,
    source: str = "<annotations>",
) -> tuple[list[dict], LoadReport]:
    """COCO-format annotations (a parsed dict or a pycocotools COCO) -> samples in the common schema + a report."""
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}.")
    layout = get_layout(layout)
    coco = data if isinstance(data, COCO) else _coco_index(data, source)
    image_root = Path(image_root)
    name = dataset_name or layout.name
    k = layout.num_keypoints
    report = LoadReport(annotation_file=source)
    keypoint_categories = {cid for cid, cat in coco.cats.items() if "keypoints" in cat}
    for cid in keypoint_categories:
        names = coco.cats[cid]["keypoints"]
        if len(names) != k:
            raise AnnotationError(
                f"Annotation file {source!r}: category {cid} ({coco.cats[cid].get('name')!r}) declares {len(names)} "
                f"keypoints but layout {layout.name!r} has {k}."
            )

    def problem(reason: str, message: str) -> None:
        if on_error == "raise":
            raise AnnotationError(message)
        report.skipped[reason] += 1
        if len(report.errors) < 20:
            report.errors.append(message)

    image_counts = Counter(image["id"] for image in coco.dataset.get("images", []))
    for ann in coco.dataset.get("annotations", []):
        if ann["image_id"] not in coco.imgs:
            problem("unknown_image", f"Annotation id {ann['id']} in {source!r} refers to image id {ann['image_id']}, "
                                     "which is not in 'images'.")
    samples: list[dict] = []
    image_exists: dict[int, bool] = {}
    seen_annotations: set = set()
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        width, height = int(info.get("width") or 0), int(info.get("height") or 0)
        path = image_root / info["file_name"]
        escapes = _escapes_root(info["file_name"])
        for ann in coco.imgToAnns.get(image_id, []):
            ann_id = ann["id"]
            where = f"annotation id {ann_id} (image id {image_id}, {str(path)!r}) in {source!r}"
            if ann_id in seen_annotations:
                problem("duplicate_annotation_id", f"Duplicated {where}: annotation ids must be unique.")
                continue
            seen_annotations.add(ann_id)
            if image_counts[image_id] > 1:
                problem("duplicate_image_id", f"Image id {image_id} of {where} is listed {image_counts[image_id]} "
                                              "times in 'images': ids must be unique.")
                continue
            if escapes:
                problem("unsafe_path", f"File name {info['file_name']!r} of {where} leaves the image root "
                                       "(absolute, or with '..').")
                continue
            if ann.get("iscrowd", 0):
                report.skipped["crowd"] += 1
                continue
            if keypoint_categories and ann.get("category_id") not in keypoint_categories:
                report.skipped["other_category"] += 1
                continue
            raw = ann.get("keypoints")
            if raw is None or ann.get("num_keypoints", 1) == 0:
                report.skipped["no_keypoints"] += 1
                continue
            try:
                values = [float(v) for v in raw]
            except (TypeError, ValueError):
                problem("bad_keypoints", f"Keypoints of {where} are not a flat list of numbers.")
                continue
            if not all(math.isfinite(v) for v in values):
                problem("nan_values", f"Keypoints of {where} hold NaN or infinite values.")
                continue
            if len(values) != 3 * k:
                problem("bad_keypoints", f"Keypoints of {where} have {len(values)} values; layout {layout.name!r} "
                                         f"needs {k} x 3 = {3 * k}.")
                continue
            if max(values) <= 0:
                report.skipped["no_keypoints"] += 1
                continue
            bbox = ann.get("bbox")
            if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
                problem("bad_bbox", f"Box of {where} must be [x, y, w, h], got {bbox!r}.")
                continue
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in bbox):
                problem("nan_values", f"Box of {where} holds non-finite or non-numeric values: {bbox!r}.")
                continue
            if ann.get("area", 1) <= 0:
                report.skipped["empty_box"] += 1
                continue
            clean = _clean_bbox(bbox, width, height)
            if clean is None:
                report.skipped["empty_box"] += 1
                continue
            if check_images:
                if image_id not in image_exists:
                    image_exists[image_id] = path.is_file()
                if not image_exists[image_id]:
                    problem("missing_image", f"Image file {str(path)!r} of {where} does not exist.")
                    continue
            keypoints = [values[i:i + 3] for i in range(0, 3 * k, 3)]
            samples.append({
                "image_path": str(path),
                "image_id": int(image_id),
                "annotation_id": int(ann_id),
                "bbox": clean,
                "keypoints": keypoints,
                "dataset": name,
                "dataset_index": int(dataset_index),
                "sample_index": len(samples),
                "image_width": width,
                "image_height": height,
            })
    report.num_samples = len(samples)
    if report.num_errors:
        logger.warning("%s. First problems: %s", report, "; ".join(report.errors[:3]))
    return samples, report


def load_keypoint_samples(
    annotation_file: str | Path,
    image_root: str | Path,
    layout: str | KeypointLayout = "coco",
    format: str = "coco",
    dataset_name: str | None = None,
    dataset_index: int = 0,
    on_error: str = "raise",
    check_images: bool = True,
) -> tuple[list[dict], LoadReport]:
    """Read an annotation file of `format` "coco", "mpii" (mmpose json) or "aic" (AI Challenger json)."""
    annotation_file = Path(annotation_file)
    data = read_json(annotation_file)
    if format == "mpii":
        data = mpii_to_coco(data, source=str(annotation_file))
    elif format == "aic":
        data = aic_to_coco(data, source=str(annotation_file))
    elif format != "coco":
        raise ValueError(f"format must be 'coco', 'mpii' or 'aic', got {format!r}.")
    return coco_to_samples(data, image_root, layout, dataset_name, dataset_index, on_error, check_images,
                           source=str(annotation_file))


def load_keypoint_dataset(
    annotation_file: str | Path,
    image_root: str | Path,
    layout: str | KeypointLayout = "coco",
    format: str = "coco",
    *,
    transform: Any = None,
    return_report: bool = False,
    **options: Any,
) -> datasets.Dataset | tuple[datasets.Dataset, LoadReport]:
    """One `datasets.Dataset` row per person (schema in the module docstring).

    `transform` (e.g. a `TopDownAugmentation`) is applied on the fly with `with_transform`: as a callable taking a
    sample dict, or through its `transform_batch` method when it has one. Without it, rows are plain samples (to
    inspect, filter, save or push). `options` are those of `load_keypoint_samples` (dataset_name, dataset_index,
    on_error, check_images).
    """
    samples, report = load_keypoint_samples(annotation_file, image_root, layout, format, **options)
    dataset = datasets.Dataset.from_list(samples, features=SAMPLE_FEATURES) if samples else \
        datasets.Dataset.from_dict({key: [] for key in SAMPLE_FEATURES}, features=SAMPLE_FEATURES)
    if transform is not None:
        dataset = dataset.with_transform(as_batch_transform(transform))
    return (dataset, report) if return_report else dataset


def as_batch_transform(transform: Callable[[dict], dict]) -> Callable[[dict[str, list]], dict[str, list]]:
    """A per-sample transform as the column-batch function `datasets.Dataset.with_transform` expects."""
    if hasattr(transform, "transform_batch"):
        return transform.transform_batch
    return functools.partial(apply_to_rows, transform)
