"""COCO keypoint AP/AR as a Hugging Face `evaluate` metric.

One row per image: `predictions` are that image's COCO keypoint results, `references` its ground-truth annotations
(a row may have either list empty; detections on an image without people are false positives). The score is
pycocotools' COCOeval with the OKS sigmas of the keypoint layout, through `vitpose_hf.evaluation`.

    metric = vitpose_hf.metrics.load_keypoint_metric()   # evaluate.load on this file, offline
    metric.add_batch(predictions=[results_of_image_1, ...], references=[annotations_of_image_1, ...])
    metric.compute(sigmas="coco")   # a layout name or one sigma per keypoint
"""

from __future__ import annotations

from collections.abc import Sequence

import datasets
import evaluate

from vitpose_hf.keypoints import get_layout
from vitpose_hf.evaluation.coco_metric import coco_keypoint_eval

_DESCRIPTION = """COCO keypoint average precision and recall (AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl) from
object keypoint similarity (OKS) with per-keypoint sigmas, computed by pycocotools' COCOeval."""

_KWARGS_DESCRIPTION = """
Args:
    predictions: per image, a list of COCO keypoint results {"image_id", "keypoints": [x, y, score] * K, "score",
        "category_id" (optional, 1)}; other keys (such as "bbox") are ignored.
    references: per image, a list of ground-truth annotations {"image_id", "keypoints": [x, y, v] * K,
        "bbox": [x, y, w, h], "area" (optional: box area), "iscrowd" (optional: 0), "num_keypoints" (optional: the
        labelled ones), "category_id" (optional: 1)}.
    sigmas: the OKS sigmas, one per keypoint, or the name of a keypoint layout that has them (default "coco").
Returns:
    {"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}: floats in [0, 1]; -1 for an area range
    without ground truth, as pycocotools reports it.
"""

_CITATION = """@inproceedings{lin2014microsoft,
  title={Microsoft COCO: Common Objects in Context},
  author={Lin, Tsung-Yi and Maire, Michael and Belongie, Serge and others},
  booktitle={ECCV},
  year={2014}
}"""

_NUMBERS = datasets.List(datasets.Value("float64"))
_PREDICTION = {
    "image_id": datasets.Value("int64"),
    "category_id": datasets.Value("int64"),
    "keypoints": _NUMBERS,
    "score": datasets.Value("float64"),
}
_REFERENCE = {
    "image_id": datasets.Value("int64"),
    "category_id": datasets.Value("int64"),
    "keypoints": _NUMBERS,
    "bbox": _NUMBERS,
    "area": datasets.Value("float64"),
    "iscrowd": datasets.Value("int64"),
    "num_keypoints": datasets.Value("int64"),
}


def _to_schema(entries: Sequence[dict] | None, schema: dict, what: str) -> list[dict] | None:
    """One image's entries with exactly the schema's keys: absent optional keys become None (filled in by
    `coco_keypoint_eval` with their defaults), extra keys (a result's "bbox") are dropped."""
    if entries is None:
        return None
    if not isinstance(entries, (list, tuple)):
        raise ValueError(f"Each row of {what} must be the list of one image's entries, got {type(entries).__name__}.")
    rows = []
    for position, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"Entry {position} of a row of {what} must be a dict, got {type(entry).__name__}.")
        rows.append({key: entry.get(key) for key in schema})
    return rows


def _present(entry: dict) -> dict:
    """Arrow gives every key of the schema back; None marks an absent one."""
    return {key: value for key, value in entry.items() if value is not None}


class KeypointAP(evaluate.Metric):
    """COCO keypoint AP/AR; rows are images (see the module docstring)."""

    def _info(self) -> evaluate.MetricInfo:
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({
                "predictions": datasets.List(_PREDICTION),
                "references": datasets.List(_REFERENCE),
            }),
            reference_urls=["https://cocodataset.org/#keypoints-eval"],
        )

    def add_batch(self, *, predictions=None, references=None, **kwargs) -> None:
        """Rows are images; each a list of results / annotations (optional keys may be left out)."""
        if predictions is not None:
            predictions = [_to_schema(row, _PREDICTION, "predictions") for row in predictions]
        if references is not None:
            references = [_to_schema(row, _REFERENCE, "references") for row in references]
        super().add_batch(predictions=predictions, references=references, **kwargs)

    def add(self, *, prediction=None, reference=None, **kwargs) -> None:
        """One image: its list of results and its list of annotations."""
        super().add(prediction=_to_schema(prediction, _PREDICTION, "predictions"),
                    reference=_to_schema(reference, _REFERENCE, "references"), **kwargs)

    def _compute(self, predictions: list, references: list, sigmas: str | Sequence[float] = "coco") -> dict:
        if isinstance(sigmas, str):
            layout = get_layout(sigmas)
            if layout.oks_sigmas is None:
                raise ValueError(f"Keypoint layout {layout.name!r} has no oks_sigmas; pass sigmas explicitly.")
            sigmas = layout.oks_sigmas
        results = [_present(result) for image in predictions for result in image]
        annotations = [_present(ann) for image in references for ann in image]
        image_ids = sorted({entry["image_id"] for entry in results + annotations})
        for position, ann in enumerate(annotations):
            ann["id"] = position + 1
        ground_truth = {
            "images": [{"id": image_id} for image_id in image_ids],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "person"}],
        }
        return coco_keypoint_eval(ground_truth, results, sigmas)
