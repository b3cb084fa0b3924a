"""Batched top-down prediction: samples (image + person box) -> COCO keypoint results."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from ..data.transforms import sample_image
from ..boxes import box_array
from ..image_processing_vitpose import VitPoseImageProcessor
from .distributed import gather_in_order, is_main_process, process_share
from .results import coco_keypoint_results


def _sample_boxes(samples: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4) xywh boxes and (N,) box scores of the samples; errors name the sample."""
    boxes = np.zeros((len(samples), 4), dtype=np.float64)
    scores = np.ones(len(samples), dtype=np.float64)
    for i, sample in enumerate(samples):
        for key in ("image_path", "image_id", "bbox"):
            if sample.get(key) is None:
                raise ValueError(f"Sample {i} has no {key!r} (keys: {sorted(sample)}).")
        boxes[i] = box_array([sample["bbox"]], f"sample {i} ({sample['image_path']!r})")[0]
        try:
            scores[i] = float(sample.get("score", 1.0))
        except (TypeError, ValueError):
            raise ValueError(f"Sample {i} ({sample['image_path']!r}): score must be a number, got "
                             f"{sample.get('score')!r}.") from None
    return boxes, scores


def _image_groups(
    per_image: Sequence[tuple[Any, list[int]]], batch_size: int
) -> Iterator[list[tuple[Any, list[int]]]]:
    """Consecutive images whose boxes fill at most `batch_size` crops (an image with more boxes is alone)."""
    group: list[tuple[Any, list[int]]] = []
    count = 0
    for image, indices in per_image:
        if group and count + len(indices) > batch_size:
            yield group
            group, count = [], 0
        group.append((image, indices))
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
    process_state: Any = None,
) -> list[dict]:
    """Top-down keypoints for every sample (image + person box), as COCO keypoint results.

    Args:
        model: a `VitPoseModel` (unwrapped from DDP/accelerate); put in eval mode for the call, its mode restored.
        processor: the `VitPoseImageProcessor` that crops the boxes and decodes the heatmaps.
        samples: dicts with `image_path`, `image_id`, `bbox` (x, y, w, h) and optionally `score` (detector boxes; 1.0
            otherwise), e.g. from `vitpose_hf.data.load_keypoint_samples` or `load_detection_boxes`; a sample with
            an `image` (rows of `vitpose_hf.data.load_keypoint_hf_dataset`) is read from it instead of the file.
        dataset_index: the head (and keypoint layout) to use, by index or name.
        batch_size: crops per forward pass (twice that with the flip test, as the pipeline does).
        flip_test: average the heatmaps with those of the mirrored crops (the paper's setting).
        device: where crops and the model run; the model's device by default.
        process_state: an `accelerate.PartialState` or `Accelerator` to split the images between the processes
            (each predicts a contiguous share of the images on its own device) and gather every result on every
            process, in sample order; call it on all processes with the same samples. None: this process does all.

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
    codec = model.config.head_codec(dataset_index).to_dict()
    k = layout.num_keypoints
    per_image: dict[tuple[str, int], list[int]] = {}
    for i, sample in enumerate(samples):
        per_image.setdefault((str(sample["image_path"]), int(sample["image_id"])), []).append(i)
    images_here = list(per_image.items())
    images_here = [images_here[i] for i in process_share(len(images_here), process_state)]
    device = torch.device(device) if device is not None else next(model.parameters()).device

    keypoints = np.zeros((len(samples), k, 2), dtype=np.float64)
    scores = np.zeros((len(samples), k), dtype=np.float64)
    was_training = model.training
    model.eval()
    progress = tqdm(total=len(images_here), desc="Evaluating", unit="img",
                    disable=not (show_progress and is_main_process(process_state)))
    try:
        with torch.inference_mode():
            for group in _image_groups(images_here, batch_size):
                images = [sample_image(samples[indices[0]]) for _, indices in group]
                group_boxes = [boxes[indices] for _, indices in group]
                inputs = processor(images, boxes=group_boxes, box_format="xywh", device=device, codec=codec)
                heatmaps, flipped = _heatmaps(model, processor, inputs["pixel_values"], dataset_index, k, batch_size,
                                              flip_test)
                people = processor.post_process_pose_estimation(
                    heatmaps, boxes=group_boxes, box_format="xywh", flipped_outputs=flipped, dataset=layout.flip_index,
                    codec=codec,
                )
                order = np.concatenate([indices for _, indices in group])
                keypoints[order] = torch.stack([p["keypoints"] for image in people for p in image]).double().numpy()
                scores[order] = torch.stack([p["scores"] for image in people for p in image]).double().numpy()
                progress.update(len(group))
    finally:
        progress.close()
        model.train(was_training)

    here = [i for _, indices in images_here for i in indices]
    image_ids = [int(samples[i]["image_id"]) for i in here]
    results = coco_keypoint_results(image_ids, keypoints[here], scores[here], box_scores[here], boxes[here]) \
        if here else []
    return gather_in_order(here, results, len(samples), process_state)

