"""Whole-dataset evaluation: predict every person, optionally in detector boxes with OKS-NMS, and score."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.coco import load_keypoint_samples
from ..data.converters import aic_to_coco, mpii_to_coco
from ..image_processing_vitpose import VitPoseImageProcessor
from ..keypoints import KeypointLayout, get_layout
from .coco_metric import _load_coco, coco_keypoint_eval
from .detections import load_detection_boxes
from .nms import OKS_NMS_THRESHOLD, oks_nms
from .pckh_metric import load_head_boxes, mpii_head_sizes, pckh
from .prediction import predict_keypoints


def _ground_truth_for(annotation_file: str | Path, format: str) -> str | Path | dict:
    """What `coco_keypoint_eval` compares against: the file itself, or its COCO-format conversion."""
    if format == "coco":
        return annotation_file
    data = json.loads(Path(annotation_file).read_text())
    return mpii_to_coco(data, str(annotation_file)) if format == "mpii" else aic_to_coco(data, str(annotation_file))


def evaluate_keypoint_dataset(
    model: torch.nn.Module,
    processor: VitPoseImageProcessor,
    annotation_file: str | Path,
    image_root: str | Path,
    layout: str | KeypointLayout | None = None,
    dataset_index: int | str = 0,
    detections: str | Path | Sequence[Mapping[str, Any]] | None = None,
    flip_test: bool = True,
    batch_size: int = 32,
    metric: str = "coco",
    format: str = "coco",
    head_boxes: str | Path | np.ndarray | None = None,
    detection_score_threshold: float = 0.0,
    use_nms: bool | None = None,
    device: str | torch.device | None = None,
    show_progress: bool = False,
    results_file: str | Path | None = None,
) -> dict[str, float]:
    """Evaluate one dataset: predict every person and score the predictions against the annotations.

    Args:
        annotation_file, image_root, format: the dataset, as for `vitpose_hf.data.load_keypoint_samples`.
        layout: its keypoint layout (OKS sigmas); the model head's by default.
        dataset_index: the model head to use.
        detections: a COCO detection-results file (or its list): predict in detector boxes instead of the annotated
            ones, each person scored by `rescore`.
        metric: "coco" (pycocotools AP/AR with the layout's sigmas) or "pckh" (MPII, needs `head_boxes`: see
            `load_head_boxes`, indexed by annotation id - 1 as `mpii_to_coco` numbers people; also gives "PCKh@0.1").
        use_nms: OKS-NMS (0.9) on the predictions for "coco"; by default only with detections (the original also
            applies it to ground-truth boxes: pass True to reproduce that).
        results_file: also write the COCO keypoint results there (JSON).

    Returns:
        Flat metric dict: `{"AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"}` or
        `{"PCKh", "PCKh@0.1", "Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle"}`, fractions in [0, 1].
    """
    if metric not in ("coco", "pckh"):
        raise ValueError(f"metric must be 'coco' or 'pckh', got {metric!r}.")
    layout = get_layout(layout) if layout is not None else model.config.layout(dataset_index)
    if metric == "coco" and layout.oks_sigmas is None:
        raise ValueError(f"Keypoint layout {layout.name!r} has no oks_sigmas: register it with sigmas for COCO AP.")
    if metric == "pckh" and (head_boxes is None or detections is not None):
        raise ValueError("metric='pckh' needs head_boxes and ground-truth boxes (no detections).")
    head_count = model.config.layout(dataset_index).num_keypoints
    if head_count != layout.num_keypoints:
        raise ValueError(f"Layout {layout.name!r} has {layout.num_keypoints} keypoints but head {dataset_index!r} "
                         f"predicts {head_count}.")

    samples, _ = load_keypoint_samples(annotation_file, image_root, layout, format=format)
    ground_truth = _ground_truth_for(annotation_file, format)
    if detections is not None:
        coco = _load_coco(ground_truth, verbose=False)
        image_paths = {image_id: Path(image_root) / info["file_name"] for image_id, info in coco.imgs.items()}
        ground_truth = coco
        predict_on = load_detection_boxes(detections, detection_score_threshold, image_paths)
    else:
        predict_on = samples
    results = predict_keypoints(model, processor, predict_on, dataset_index, batch_size, flip_test, device,
                                show_progress)
    if metric == "coco" and (use_nms or (use_nms is None and detections is not None)):
        results = oks_nms(results, OKS_NMS_THRESHOLD, layout.oks_sigmas, aspect_ratio=processor.aspect_ratio,
                          padding=processor.padding)
    if results_file is not None:
        Path(results_file).write_text(json.dumps(results))

    if metric == "coco":
        return coco_keypoint_eval(ground_truth, results, layout.oks_sigmas)
    boxes = load_head_boxes(head_boxes)
    ids = np.asarray([s["annotation_id"] for s in samples], dtype=np.int64)
    if len(ids) and (ids.max() > len(boxes) or ids.min() < 1):
        raise ValueError(f"Head boxes ({len(boxes)}) do not cover annotation id {int(ids.max())} of {annotation_file}.")
    shape = (len(samples), layout.num_keypoints, 3)
    truth = np.asarray([s["keypoints"] for s in samples], dtype=np.float64).reshape(shape)
    predicted = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(shape)
    sizes = mpii_head_sizes(boxes[ids - 1])
    out = pckh(predicted[..., :2], truth[..., :2], truth[..., 2] > 0, sizes, 0.5)
    out.pop("per_joint")
    out["PCKh@0.1"] = pckh(predicted[..., :2], truth[..., :2], truth[..., 2] > 0, sizes, 0.1)["PCKh"]
    return out

