"""Person boxes: the one place where box arguments are parsed and checked.

The processor, the pipeline, evaluation and the detection-file readers all accept boxes from users and files; they
all come through here, so a bad box gets the same clear error (naming the image and the box) wherever it enters.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

BOX_FORMATS = ("xywh", "xyxy")
# Coordinates beyond this many pixels are no image's: they only overflow the float32 crop maths into NaN.
MAX_COORDINATE = 1e9


def check_box_format(box_format: Any) -> str:
    if box_format not in BOX_FORMATS:
        raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}.")
    return box_format


def is_box_list(boxes: Any) -> bool:
    """True for the boxes of ONE image: an (n, 4) array or a list of boxes; False for a list of per-image lists."""
    if isinstance(boxes, (np.ndarray, torch.Tensor)):
        return boxes.ndim <= 2
    if not isinstance(boxes, (list, tuple)) or len(boxes) == 0:
        return False
    first = boxes[0]
    if isinstance(first, (np.ndarray, torch.Tensor)):
        return first.ndim == 1
    return isinstance(first, (list, tuple)) and len(first) > 0 and isinstance(first[0], (int, float, np.number))


def box_array(boxes: Any, image: int | str, box_format: str = "xywh", with_scores: bool = False) -> np.ndarray:
    """Boxes of one image -> a float64 (n, 4) array, or (n, 5) with a score column when `with_scores` allows it.

    Float64 keeps large coordinates exact. Every box must be finite with a positive width and height; the error
    names the image (its index, or a description such as "detection entry 3 in 'dets.json'") and the box.
    """
    check_box_format(box_format)
    image = f"image {image}" if isinstance(image, int) else image
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    if isinstance(boxes, (str, bytes)) or np.isscalar(boxes):
        raise ValueError(f"Boxes of {image} must be a list of boxes, got {boxes!r}.")
    try:
        array = np.array(boxes, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ValueError(f"Boxes of {image} are not lists of numbers: {error}") from None
    if array.size == 0:
        return array.reshape(0, 4)
    columns = (4, 5) if with_scores else (4,)
    if array.ndim == 1 and array.shape[0] in columns:
        raise ValueError(f"Boxes of {image} must be a list of boxes, got a single box {array.tolist()}.")
    if array.ndim != 2 or array.shape[1] not in columns:
        shapes = " or ".join(f"(n, {c})" for c in columns)
        raise ValueError(f"Boxes of {image} must have shape {shapes}, got {array.shape}.")
    # Crops are computed in float32: a box must keep a positive size there too (a 1e-9 pixel box does not).
    corners = boxes_to_xyxy(array[:, :4], box_format) if np.isfinite(array).all() else array[:, :4]
    with np.errstate(over="ignore"):  # beyond float32: inf, refused below
        corners32 = corners.astype(np.float32)
    bad = (
        ~np.isfinite(array).all(axis=1)
        | (np.abs(corners) > MAX_COORDINATE).any(axis=1)
        | ~(corners32[:, 2:4] > corners32[:, :2]).all(axis=1)
    )
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"Box {j} of {image} is invalid ({box_format} {array[j, :4].tolist()}): coordinates must be finite, "
            f"within +-{MAX_COORDINATE:g} pixels, and width and height positive."
        )
    return array


def boxes_per_image(
    boxes: Any, num_images: int | None, single_image: bool, box_format: str = "xywh", with_scores: bool = False,
    optional: bool = False,
) -> list[np.ndarray | None]:
    """Checked boxes of each image (see `box_array`); a single image may take its box list without the outer list.

    With `optional`, `boxes=None` (or None for one image) means "not given" and stays None.
    """
    if boxes is None:
        if optional:
            return [None] * (num_images or 0)
        raise ValueError("boxes are required: one list of person boxes per image (e.g. [[[x, y, w, h], ...]]).")
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    if isinstance(boxes, (str, bytes)) or np.isscalar(boxes) or not hasattr(boxes, "__len__"):
        raise ValueError(f"boxes must be one list of boxes per image, got {boxes!r}.")
    flat = isinstance(boxes, (list, tuple)) and len(boxes) > 0 and all(
        isinstance(v, (int, float, np.number)) for v in boxes
    )
    if flat and single_image:
        return [box_array(boxes, 0, box_format, with_scores)]  # one bare box: an error saying so
    if is_box_list(boxes) or (single_image and len(boxes) == 0):

        boxes = [boxes]
    if isinstance(boxes, np.ndarray) and boxes.ndim != 3:
        raise ValueError(f"Batched boxes must have shape (num_images, n, 4), got {tuple(boxes.shape)}.")
    if num_images is not None and len(boxes) != num_images:
        raise ValueError(
            f"boxes has {len(boxes)} box lists for {num_images} images: pass one list of boxes per image (an empty "
            "list for an image without people)."
        )
    return [
        None if image_boxes is None and optional else box_array(image_boxes, i, box_format, with_scores)
        for i, image_boxes in enumerate(boxes)
    ]


def boxes_to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """(n, 4) boxes as [x0, y0, x1, y1] (a copy)."""
    out = np.array(boxes, dtype=np.float64)
    if check_box_format(box_format) == "xywh":
        out[:, 2:4] += out[:, :2]
    return out


def boxes_to_xywh(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """(n, 4) boxes as [x, y, width, height] (a copy)."""
    out = np.array(boxes, dtype=np.float64)
    if check_box_format(box_format) == "xyxy":
        out[:, 2:4] -= out[:, :2]
    return out
