"""Person scores and OKS-NMS as the original evaluates: rescoring by confident keypoints, greedy OKS-NMS."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..geometry import box_to_center_scale
from ..keypoints import get_layout

KEYPOINT_SCORE_THRESHOLD = 0.2  # the original's vis_thr: only confident keypoints count in a person's score
OKS_NMS_THRESHOLD = 0.9


def rescore(
    keypoint_scores: np.ndarray, box_scores: np.ndarray, threshold: float = KEYPOINT_SCORE_THRESHOLD
) -> np.ndarray:
    """Person scores (N,) = box score x mean of the keypoint scores above `threshold` (0 when none is).

    Why: a detector box around no one still gets a pose; its keypoint confidences are what reveal it.
    """
    keypoint_scores = np.asarray(keypoint_scores, dtype=np.float64)
    confident = keypoint_scores > threshold
    count = confident.sum(axis=1)
    total = np.where(confident, keypoint_scores, 0.0).sum(axis=1)
    mean = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return mean * np.asarray(box_scores, dtype=np.float64)



def keypoint_oks(
    reference: np.ndarray, others: np.ndarray, reference_area: float, other_areas: np.ndarray, sigmas: np.ndarray,
    vis_threshold: float | None = None,
) -> np.ndarray:
    """OKS of one person's keypoints (K, >=2) with each of `others` (N, K, 3), as mmpose 0.x computes it for OKS-NMS
    (and pose tracking): the scale is the mean of the two areas; with `vis_threshold`, only the keypoints of the
    other person scoring above it count."""
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    squared = ((others[..., :2] - reference[:, :2]) ** 2).sum(-1)
    e = squared / variances / ((reference_area + np.asarray(other_areas))[:, None] / 2 + np.spacing(1)) / 2
    similarity = np.exp(-e)
    if vis_threshold is None:
        return similarity.mean(axis=1)
    # The original's mask is `list(vg > thr) and list(vd > thr)`, i.e. the other person's visibility only.
    counted = others[..., 2] > vis_threshold
    count = counted.sum(axis=1)
    return np.divide(np.where(counted, similarity, 0).sum(axis=1), count, out=np.zeros(len(others)), where=count > 0)


def _oks_nms_indices(
    keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, threshold: float, sigmas: np.ndarray,
    vis_threshold: float | None,
) -> list[int]:
    """Greedy OKS-NMS of one image: the kept indices, best first."""
    order = scores.argsort()[::-1]
    keep = []
    while len(order) > 0:
        best, rest = order[0], order[1:]
        keep.append(int(best))
        oks = keypoint_oks(keypoints[best], keypoints[rest], areas[best], areas[rest], sigmas, vis_threshold)
        order = rest[oks.astype(np.float32) <= threshold]
    return keep


def oks_nms(
    results: Sequence[Mapping[str, Any]],
    threshold: float = OKS_NMS_THRESHOLD,
    sigmas: Sequence[float] | None = None,
    vis_threshold: float | None = None,
    aspect_ratio: float = 0.75,
    padding: float = 1.25,
) -> list[dict]:
    """Per image, keep a person only if its OKS with every better-scoring kept person is at most `threshold`.

    As mmpose 0.x `oks_nms` (what ViTPose evaluates with): the area in the OKS is the crop box's (the result's
    `bbox` widened to `aspect_ratio` and enlarged by `padding`); the original calls it without `vis_threshold`.
    `sigmas` default to COCO's. Returns the kept results, image by image, best first.
    """
    sigmas = np.asarray(sigmas if sigmas is not None else get_layout("coco").oks_sigmas, dtype=np.float64)
    per_image: dict[int, list[int]] = {}
    for i, result in enumerate(results):
        missing = [key for key in ("image_id", "keypoints", "score", "bbox") if key not in result]
        if missing:
            raise ValueError(f"Result {i} has no {missing} (OKS-NMS takes each person's area from its bbox).")
        per_image.setdefault(int(result["image_id"]), []).append(i)
    kept = []
    for indices in per_image.values():
        people = [results[i] for i in indices]
        keypoints = np.asarray([p["keypoints"] for p in people], dtype=np.float64)
        if keypoints.ndim != 2 or keypoints.shape[1] != 3 * len(sigmas):
            raise ValueError(f"Results of image {people[0]['image_id']} need {3 * len(sigmas)} keypoint values each "
                             f"({len(sigmas)} sigmas).")
        boxes = torch.as_tensor([p["bbox"] for p in people], dtype=torch.float64)
        _, size = box_to_center_scale(boxes, "xywh", aspect_ratio, padding)
        areas = size.double().prod(dim=1).numpy()
        scores = np.asarray([p["score"] for p in people], dtype=np.float64)
        keep = _oks_nms_indices(keypoints.reshape(len(people), -1, 3), scores, areas, threshold, sigmas, vis_threshold)
        kept += [dict(people[j]) for j in keep]
    return kept

