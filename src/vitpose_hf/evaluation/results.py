"""People -> COCO keypoint results, scored one way everywhere (evaluation, `vitpose-hf predict --coco-results`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .nms import rescore


def coco_keypoint_results(
    image_ids: Sequence[int], keypoints: np.ndarray, keypoint_scores: np.ndarray, box_scores: np.ndarray,
    boxes_xywh: np.ndarray,
) -> list[dict]:
    """COCO results `{"image_id", "category_id", "keypoints": [x, y, s] * K, "score", "bbox"}`, one per person.

    A person's score is the original's rescoring (`rescore`): box score x mean of its confident keypoint scores.
    """
    keypoints = np.asarray(keypoints, dtype=np.float64).reshape(len(image_ids), -1, 2)
    keypoint_scores = np.asarray(keypoint_scores, dtype=np.float64).reshape(len(image_ids), -1)
    person_scores = rescore(keypoint_scores, np.asarray(box_scores, dtype=np.float64))
    flat = np.concatenate([keypoints, keypoint_scores[..., None]], axis=-1).reshape(len(image_ids), -1).tolist()
    boxes = np.asarray(boxes_xywh, dtype=np.float64).reshape(len(image_ids), 4).tolist()
    return [
        {"image_id": int(image_id), "category_id": 1, "keypoints": flat[i], "score": float(person_scores[i]),
         "bbox": boxes[i]}
        for i, image_id in enumerate(image_ids)
    ]
