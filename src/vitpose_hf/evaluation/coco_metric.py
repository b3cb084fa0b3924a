"""COCO keypoint AP/AR: pycocotools' COCOeval with the layout's OKS sigmas (any number of keypoints)."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..data.coco import read_json
from ..data.converters import AnnotationError

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def _ground_truth_dict(data: Mapping[str, Any], source: str) -> dict:
    """A copy of COCO ground truth with what COCOeval needs filled in (category, num_keypoints, iscrowd, area)."""
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list) or not isinstance(
            data.get("annotations"), list):
        raise AnnotationError(f"Ground truth {source!r} must be a COCO dict with 'images' and 'annotations' lists.")
    data = dict(data)
    data["categories"] = list(data.get("categories") or [{"id": 1, "name": "person"}])
    annotations = []
    for position, ann in enumerate(data["annotations"]):
        if not isinstance(ann, Mapping) or any(key not in ann for key in ("image_id", "keypoints", "bbox")):
            raise AnnotationError(f"Ground truth {source!r}: annotation entry {position} needs 'image_id', "
                                  "'keypoints' and 'bbox'.")
        ann = dict(ann)
        ann.setdefault("id", position + 1)
        ann.setdefault("category_id", 1)
        ann.setdefault("iscrowd", 0)
        if ann.get("num_keypoints") is None:
            ann["num_keypoints"] = int(np.count_nonzero(np.asarray(ann["keypoints"], dtype=np.float64)[2::3] > 0))
        if ann.get("area") is None:
            ann["area"] = float(ann["bbox"][2]) * float(ann["bbox"][3])
        annotations.append(ann)
    data["annotations"] = annotations
    return data


def _load_coco(coco_gt: str | Path | Mapping[str, Any] | COCO, verbose: bool) -> COCO:
    if isinstance(coco_gt, COCO):
        return coco_gt
    if isinstance(coco_gt, (str, Path)):
        source = str(coco_gt)
        coco_gt = read_json(source, "Ground-truth file")
    else:
        source = "<ground truth>"
    coco = COCO()
    coco.dataset = _ground_truth_dict(coco_gt, source)
    with _quiet(verbose):
        coco.createIndex()
    return coco


def _quiet(verbose: bool) -> contextlib.AbstractContextManager:
    """pycocotools prints its progress and tables; keep them only when asked."""
    return contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())


def coco_keypoint_eval(
    coco_gt: str | Path | Mapping[str, Any] | COCO,
    results: Sequence[Mapping[str, Any]],
    sigmas: Sequence[float],
    verbose: bool = False,
) -> dict[str, float]:
    """COCO keypoint AP/AR of `results` with pycocotools, OKS computed with `sigmas` (one per keypoint, any K).

    `coco_gt` is a ground-truth file, dict or pycocotools COCO. Results are COCO keypoint results; only their
    `image_id`, `category_id` (1 if absent), `keypoints` and `score` are used, so that, as in the original, the area
    of a result is that of its keypoints. Empty results score 0.
    """
    sigmas = np.asarray(sigmas, dtype=np.float64).reshape(-1)
    if len(sigmas) == 0 or not np.all(sigmas > 0):
        raise ValueError(f"sigmas must be positive, one per keypoint, got {sigmas.tolist()}.")
    coco = _load_coco(coco_gt, verbose)
    if len(results) == 0:
        return {name: 0.0 for name in COCO_METRIC_NAMES}
    image_ids = set(coco.getImgIds())
    clean = []
    for i, result in enumerate(results):
        if any(key not in result for key in ("image_id", "keypoints", "score")):
            raise ValueError(f"Result {i} needs 'image_id', 'keypoints' and 'score', got keys {sorted(result)}.")
        if result["image_id"] not in image_ids:
            raise ValueError(f"Result {i} is for image id {result['image_id']}, which is not in the ground truth.")
        keypoints = [float(v) for v in result["keypoints"]]
        if len(keypoints) != 3 * len(sigmas):
            raise ValueError(f"Result {i} has {len(keypoints)} keypoint values; {len(sigmas)} sigmas need "
                             f"{3 * len(sigmas)}.")
        clean.append({"image_id": result["image_id"], "category_id": int(result.get("category_id", 1)),
                      "keypoints": keypoints, "score": float(result["score"])})
    for ann in coco.dataset["annotations"]:
        if len(ann["keypoints"]) != 3 * len(sigmas):
            raise ValueError(f"Ground-truth annotation id {ann.get('id')} has {len(ann['keypoints'])} keypoint values; "
                             f"{len(sigmas)} sigmas need {3 * len(sigmas)}.")
    with _quiet(verbose):
        detections = coco.loadRes(clean)
        evaluator = COCOeval(coco, detections, iouType="keypoints")
        evaluator.params.kpt_oks_sigmas = sigmas
        evaluator.params.useSegm = None
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {name: float(value) for name, value in zip(COCO_METRIC_NAMES, evaluator.stats)}

