"""Whole-dataset evaluation: predict every person, optionally in detector boxes with OKS-NMS, and score."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data.coco import coco_to_samples, load_keypoint_samples
from ..data.converters import aic_to_coco, mpii_to_coco
from ..data.hf_datasets import coco_from_rows
from ..image_processing_vitpose import VitPoseImageProcessor
from ..keypoints import KeypointLayout, get_layout
from .coco_metric import _load_coco, coco_keypoint_eval
from .detections import load_detection_boxes
from .distributed import is_main_process
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
    annotation_file: str | Path | None = None,
    image_root: str | Path | None = None,
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
    rows: Iterable[Mapping[str, Any]] | None = None,
    columns: Mapping[str, str] | None = None,
    process_state: Any = None,
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
        results_file: also write the COCO keypoint results there (JSON; by the main process only).
        rows, columns: the dataset as rows of the `datasets` library instead of a file (`load_keypoint_rows`, streamed
            or not; see `vitpose_hf.data.hf_datasets` for the columns): ground truth and samples are built from
            them by the rules of annotation files, so a parquet export of a file scores exactly as the file.
        process_state: evaluate on several processes (`accelerate.PartialState` or the training loop's
            `Accelerator`): call this on every process with the same arguments; each predicts its share of the
            images on its own device (`device`, default the model's: put the model on `process_state.device`),
            the results are gathered in sample order and every process returns the same metrics, equal to a
            one-process run. Gathering is `accelerate.utils.gather_object` (a collective: no process may skip
            the call).

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

    if (rows is None) == (annotation_file is None):
        raise ValueError("Give either annotation_file (with image_root) or rows, not both or neither.")
    images = None
    if rows is not None:
        ground_truth, images = coco_from_rows(rows, columns, source="rows")
        samples, _ = coco_to_samples(ground_truth, "", layout, check_images=False, source="rows")
        samples = [{**sample, "image": images[sample["image_id"]]} for sample in samples]
    else:
        if image_root is None:
            raise ValueError("annotation_file needs image_root, the folder its file names are relative to.")
        samples, _ = load_keypoint_samples(annotation_file, image_root, layout, format=format)
        ground_truth = _ground_truth_for(annotation_file, format)
    if detections is not None:
        coco = _load_coco(ground_truth, verbose=False)
        root = Path(image_root) if image_root is not None else Path("")
        image_paths = {image_id: root / info["file_name"] for image_id, info in coco.imgs.items()}
        ground_truth = coco
        predict_on = load_detection_boxes(detections, detection_score_threshold, image_paths)
        if images is not None:
            predict_on = [{**sample, "image": images[sample["image_id"]]} for sample in predict_on]
    else:
        predict_on = samples
    results = predict_keypoints(model, processor, predict_on, dataset_index, batch_size, flip_test, device,
                                show_progress, process_state)
    if metric == "coco" and (use_nms or (use_nms is None and detections is not None)):
        results = oks_nms(results, OKS_NMS_THRESHOLD, layout.oks_sigmas, aspect_ratio=processor.aspect_ratio,
                          padding=processor.padding)
    if results_file is not None and is_main_process(process_state):
        Path(results_file).write_text(json.dumps(results))

    if metric == "coco":
        return coco_keypoint_eval(ground_truth, results, layout.oks_sigmas)
    boxes = load_head_boxes(head_boxes)
    ids = np.asarray([s["annotation_id"] for s in samples], dtype=np.int64)
    if len(ids) and (ids.max() > len(boxes) or ids.min() < 1):
        raise ValueError(f"Head boxes ({len(boxes)}) do not cover annotation id {int(ids.max())} of "
                         f"{annotation_file or 'the rows'}.")
    shape = (len(samples), layout.num_keypoints, 3)
    truth = np.asarray([s["keypoints"] for s in samples], dtype=np.float64).reshape(shape)
    predicted = np.asarray([r["keypoints"] for r in results], dtype=np.float64).reshape(shape)
    sizes = mpii_head_sizes(boxes[ids - 1])
    out = pckh(predicted[..., :2], truth[..., :2], truth[..., 2] > 0, sizes, 0.5)
    out.pop("per_joint")
    out["PCKh@0.1"] = pckh(predicted[..., :2], truth[..., :2], truth[..., 2] > 0, sizes, 0.1)["PCKh"]
    return out

