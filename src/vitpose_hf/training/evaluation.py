"""Top-down keypoint evaluation as the original ViTPose does it: COCO keypoint AP/AR and MPII PCKh.

What the training loop calls, once per dataset:

    metrics = evaluate_keypoint_dataset(
        model, processor, "annotations.json", "images/", layout="coco", dataset_index=0,
        detections=None,          # or a COCO detection-results file: detector boxes, rescoring and OKS-NMS
        flip_test=True, batch_size=32, metric="coco",   # or "pckh" (MPII, with head_boxes=...)
    )
    # {"AP": 0.71, "AP50": ..., "AP75": ..., "APm": ..., "APl": ..., "AR": ..., "AR50": ..., ...}

The steps are public so they can be used on their own:

- `predict_keypoints(model, processor, samples, ...)`: samples (image path + person box, as produced by
  `vitpose_hf.data.load_keypoint_samples` or `load_detection_boxes`) -> COCO keypoint results. Images are read once,
  crops of many images share a forward pass, heatmaps are decoded by `VitPoseImageProcessor`.
- `rescore(...)`: a person's score is its box score times the mean of its keypoint scores above 0.2.
- `oks_nms(results, ...)`: per image, drop people whose OKS with a better-scoring one exceeds 0.9 (mmpose 0.x);
  `keypoint_oks(...)` is its OKS of one person against others.
- `coco_keypoint_eval(coco_gt, results, sigmas)`: pycocotools' COCOeval with the layout's OKS sigmas (any K).
- `pckh(...)` and `mpii_head_sizes(...)`: MPII's PCKh with head boxes (SC_BIAS 0.6).

All scores are fractions in [0, 1] (the original prints them multiplied by 100). pycocotools reports -1 for an
area range without ground truth; that is kept.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ..codec import box_to_center_scale
from ..data.coco import load_keypoint_samples, read_json
from ..data.converters import AnnotationError, aic_to_coco, mpii_to_coco
from ..data.transforms import load_image
from ..image_processing_vitpose import VitPoseImageProcessor
from ..keypoints import KeypointLayout, get_layout

COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
KEYPOINT_SCORE_THRESHOLD = 0.2  # the original's vis_thr: only confident keypoints count in a person's score
OKS_NMS_THRESHOLD = 0.9
MPII_SC_BIAS = 0.6
# MPII joint groups the original reports (indices in the MPII layout) and the joints left out of its mean.
MPII_JOINT_GROUPS = {
    "Head": (9,), "Shoulder": (12, 13), "Elbow": (11, 14), "Wrist": (10, 15), "Hip": (2, 3), "Knee": (1, 4),
    "Ankle": (0, 5),
}
MPII_EXCLUDED_FROM_MEAN = (6, 7)  # pelvis, thorax


# Inference -----------------------------------------------------------------------------------------------------


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


def _sample_boxes(samples: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xywh boxes and (N,) box scores of the samples; errors name the sample."""
    boxes = np.zeros((len(samples), 4), dtype=np.float64)
    scores = np.ones(len(samples), dtype=np.float64)
    for i, sample in enumerate(samples):
        for key in ("image_path", "image_id", "bbox"):
            if sample.get(key) is None:
                raise ValueError(f"Sample {i} has no {key!r} (keys: {sorted(sample)}).")
        try:
            boxes[i] = np.asarray(sample["bbox"], dtype=np.float64).reshape(4)
            scores[i] = float(sample.get("score", 1.0))
        except (TypeError, ValueError):
            raise ValueError(
                f"Sample {i} ({sample['image_path']!r}): bbox must be 4 numbers [x, y, w, h] and score a number, got "
                f"{sample['bbox']!r} and {sample.get('score')!r}."
            ) from None
        if not (np.isfinite(boxes[i]).all() and boxes[i, 2] > 0 and boxes[i, 3] > 0):
            raise ValueError(
                f"Sample {i} ({sample['image_path']!r}): bbox {boxes[i].tolist()} needs width, height > 0."
            )
    return boxes, scores


def _image_groups(per_image: dict[str, list[int]], batch_size: int) -> Iterator[list[tuple[str, list[int]]]]:
    """Consecutive images whose boxes fill at most `batch_size` crops (an image with more boxes is alone)."""
    group: list[tuple[str, list[int]]] = []
    count = 0
    for path, indices in per_image.items():
        if group and count + len(indices) > batch_size:
            yield group
            group, count = [], 0
        group.append((path, indices))
        count += len(indices)
    if group:
        yield group


def _heatmaps(
    model: torch.nn.Module, processor: VitPoseImageProcessor, pixel_values: torch.Tensor, dataset_index: int | str, num_keypoints: int,
    batch_size: int, flip_test: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Heatmaps of the crops (and of their mirrored copies), `batch_size` crops per forward."""
    dtype = next(model.parameters()).dtype
    found, flipped = [], []
    for start in range(0, len(pixel_values), batch_size):
        crops = pixel_values[start:start + batch_size].to(dtype)
        if flip_test:
            crops = torch.cat([crops, processor.flip_pixel_values(crops)])
        maps = model(pixel_values=crops, dataset_index=dataset_index).heatmaps[:, :num_keypoints].float()
        n = len(maps) // 2 if flip_test else len(maps)
        found.append(maps[:n])
        flipped.append(maps[n:])
    return torch.cat(found), (torch.cat(flipped) if flip_test else None)


def predict_keypoints(
    model: torch.nn.Module,
    processor: VitPoseImageProcessor,
    samples: Sequence[Mapping[str, Any]],
    dataset_index: int | str = 0,
    batch_size: int = 32,
    flip_test: bool = True,
    device: str | torch.device | None = None,
    show_progress: bool = False,
) -> list[dict]:
    """Top-down keypoints for every sample (image + person box), as COCO keypoint results.

    Args:
        model: a `VitPoseModel` (unwrapped from DDP/accelerate); put in eval mode for the call, its mode restored.
        processor: the `VitPoseImageProcessor` that crops the boxes and decodes the heatmaps.
        samples: dicts with `image_path`, `image_id`, `bbox` (x, y, w, h) and optionally `score` (detector boxes; 1.0
            otherwise), e.g. from `vitpose_hf.data.load_keypoint_samples` or `load_detection_boxes`.
        dataset_index: the head (and keypoint layout) to use, by index or name.
        batch_size: crops per forward pass (twice that with the flip test, as the pipeline does).
        flip_test: average the heatmaps with those of the mirrored crops (the paper's setting).
        device: where crops and the model run; the model's device by default.

    Returns:
        One result per sample, in the order of `samples`: `{"image_id", "category_id": 1, "keypoints": [x, y, s] * K,
        "score": rescored person score (see `rescore`), "bbox": [x, y, w, h]}`.
    """
    from tqdm.auto import tqdm

    samples = list(samples)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    boxes, box_scores = _sample_boxes(samples)
    layout = model.config.layout(dataset_index)
    k = layout.num_keypoints
    per_image: dict[str, list[int]] = {}
    for i, sample in enumerate(samples):
        per_image.setdefault(str(sample["image_path"]), []).append(i)
    device = torch.device(device) if device is not None else next(model.parameters()).device

    keypoints = np.zeros((len(samples), k, 2), dtype=np.float64)
    scores = np.zeros((len(samples), k), dtype=np.float64)
    was_training = model.training
    model.eval()
    progress = tqdm(total=len(per_image), desc="Evaluating", unit="img", disable=not show_progress)
    try:
        with torch.inference_mode():
            for group in _image_groups(per_image, batch_size):
                images = [load_image(path, samples[indices[0]].get("annotation_id")) for path, indices in group]
                group_boxes = [boxes[indices] for _, indices in group]
                inputs = processor(images, boxes=group_boxes, box_format="xywh", device=device)
                heatmaps, flipped = _heatmaps(model, processor, inputs["pixel_values"], dataset_index, k, batch_size,
                                              flip_test)
                people = processor.post_process_pose_estimation(
                    heatmaps, boxes=group_boxes, box_format="xywh", flipped_outputs=flipped, dataset=layout.flip_index
                )
                order = np.concatenate([indices for _, indices in group])
                keypoints[order] = torch.stack([p["keypoints"] for image in people for p in image]).double().numpy()
                scores[order] = torch.stack([p["scores"] for image in people for p in image]).double().numpy()
                progress.update(len(group))
    finally:
        progress.close()
        model.train(was_training)

    person_scores = rescore(scores, box_scores)
    flat = np.concatenate([keypoints, scores[..., None]], axis=-1).reshape(len(samples), 3 * k).tolist()
    return [
        {"image_id": int(sample["image_id"]), "category_id": 1, "keypoints": flat[i], "score": float(person_scores[i]),
         "bbox": boxes[i].tolist()}
        for i, sample in enumerate(samples)
    ]


# Detection boxes and OKS-NMS -------------------------------------------------------------------------------------


def load_detection_boxes(
    path_or_list: str | Path | Sequence[Mapping[str, Any]],
    score_threshold: float = 0.0,
    image_paths: Mapping[int, str | Path] | None = None,
) -> list[dict]:
    """Person boxes of a COCO detection-results file -> samples for `predict_keypoints`.

    Entries are `{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`; only category 1 (person) with a score
    of at least `score_threshold` is kept, as the original does. `image_paths` maps image ids to files (without it,
    samples have `image_path` None). Bad entries raise an error naming the file and the entry.
    """
    source = "<detections>"
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
        try:
            box = [float(v) for v in entry["bbox"]]
            score = float(entry["score"])
            image_id = int(entry["image_id"])
        except (TypeError, ValueError):
            raise ValueError(f"{where}: image_id, bbox and score must be numbers, got {entry!r}.") from None
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or box[2] <= 0 or box[3] <= 0:
            raise ValueError(f"{where}: bbox must be [x, y, w, h] with width and height > 0, got {entry['bbox']!r}.")
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


# COCO keypoint AP ------------------------------------------------------------------------------------------------


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


# PCKh ---------------------------------------------------------------------------------------------------------


def mpii_head_sizes(head_boxes: np.ndarray | Sequence) -> np.ndarray:
    """MPII head boxes (N, 4) `[x1, y1, x2, y2]` or (N, 2, 2) -> PCKh normalisers: SC_BIAS 0.6 x box diagonal."""
    boxes = np.asarray(head_boxes, dtype=np.float64)
    if boxes.ndim == 3 and boxes.shape[1:] == (2, 2):
        boxes = boxes.reshape(-1, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"Head boxes must have shape (N, 4) or (N, 2, 2), got {boxes.shape}.")
    return MPII_SC_BIAS * np.linalg.norm(boxes[:, 2:] - boxes[:, :2], axis=1)


def pckh(
    predictions: np.ndarray,
    ground_truth: np.ndarray,
    visible: np.ndarray,
    head_sizes: np.ndarray,
    threshold: float = 0.5,
    mean_joints: Sequence[int] | None = None,
) -> dict[str, Any]:
    """PCKh: the share of visible joints predicted within `threshold` x head size of the truth (MPII's protocol).

    Args:
        predictions, ground_truth: (N, K, 2) joint positions.
        visible: (N, K) which ground-truth joints count.
        head_sizes: (N,) the normaliser per person, already SC_BIAS x head diagonal (`mpii_head_sizes`).
        mean_joints: joints averaged into "PCKh"; default: all, except pelvis and thorax for the 16 MPII joints, as
            the original does (its mean weights joints by their visible counts, i.e. pools them).

    Returns:
        `{"PCKh": mean, "per_joint": [K values]}` and, for 16 joints, MPII's groups ("Head", "Shoulder", ...: the
        mean of the left and right joint). A joint that is never visible scores 0.
    """
    predictions = np.asarray(predictions, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    visible = np.asarray(visible).astype(bool)
    head_sizes = np.asarray(head_sizes, dtype=np.float64).reshape(-1)
    if predictions.shape != ground_truth.shape or predictions.ndim != 3 or predictions.shape[-1] != 2:
        raise ValueError(
            f"predictions {predictions.shape} and ground_truth {ground_truth.shape} must both be (N, K, 2)."
        )
    n, k = predictions.shape[:2]
    if visible.shape != (n, k) or head_sizes.shape != (n,):
        raise ValueError(
            f"visible must be ({n}, {k}) and head_sizes ({n},), got {visible.shape} and {head_sizes.shape}."
        )
    bad = visible.any(axis=1) & ~(np.isfinite(head_sizes) & (head_sizes > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"Person {i} has head size {head_sizes[i]}: head sizes must be positive.")
    errors = np.linalg.norm(predictions - ground_truth, axis=-1) / np.where(head_sizes > 0, head_sizes, 1.0)[:, None]
    correct = (errors <= threshold) & visible
    counts = visible.sum(axis=0)
    per_joint = np.divide(correct.sum(axis=0), counts, out=np.zeros(k), where=counts > 0)
    if mean_joints is None:
        mean_joints = [j for j in range(k) if k != 16 or j not in MPII_EXCLUDED_FROM_MEAN]
    mean_joints = list(mean_joints)
    total = counts[mean_joints].sum()
    out: dict[str, Any] = {"PCKh": float(correct[:, mean_joints].sum() / total) if total else 0.0,
                           "per_joint": per_joint.tolist()}
    if k == 16:
        out.update({name: float(per_joint[list(joints)].mean()) for name, joints in MPII_JOINT_GROUPS.items()})
    return out


def load_head_boxes(head_boxes: str | Path | np.ndarray | Sequence) -> np.ndarray:
    """MPII head boxes as (N, 4) `[x1, y1, x2, y2]`, in the order of the annotation file's people.

    Accepts an array, a `.json` / `.npy` file of boxes, or mmpose's `mpii_gt_val.mat` (`headboxes_src`, (2, 2, N)).
    """
    if isinstance(head_boxes, (str, Path)):
        path = Path(head_boxes)
        if not path.is_file():
            raise FileNotFoundError(f"Head-box file {str(path)!r} does not exist.")
        if path.suffix == ".mat":
            from scipy.io import loadmat

            data = loadmat(str(path))
            if "headboxes_src" not in data:
                raise ValueError(f"Head-box file {str(path)!r} has no 'headboxes_src'.")
            head_boxes = np.transpose(data["headboxes_src"], (2, 0, 1))
        elif path.suffix == ".npy":
            head_boxes = np.load(path)
        else:
            head_boxes = json.loads(path.read_text())
    boxes = np.asarray(head_boxes, dtype=np.float64)
    return boxes.reshape(-1, 4) if boxes.ndim == 3 else boxes


# Whole datasets -------------------------------------------------------------------------------------------------


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


__all__ = [
    "COCO_METRIC_NAMES",
    "coco_keypoint_eval",
    "evaluate_keypoint_dataset",
    "load_detection_boxes",
    "load_head_boxes",
    "mpii_head_sizes",
    "oks_nms",
    "pckh",
    "predict_keypoints",
    "rescore",
]
