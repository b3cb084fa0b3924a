"""Drawing pose results on images, and handing them to other tools.

The skeleton comes from the keypoint layout stored in the model config (`config.layout(dataset)`), so a custom
keypoint set is drawn correctly without any extra declaration. Pillow only: no OpenCV or supervision needed.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from .configuration_vitpose import VitPoseConfig
from .keypoints import KeypointLayout

Color = tuple[int, int, int]
SkeletonLike = KeypointLayout | VitPoseConfig | Sequence[Sequence[int]]

JOINT_WITHOUT_LIMB_COLOR: Color = (255, 255, 255)
BOX_COLOR: Color = (255, 255, 255)


def limb_colors(num_limbs: int) -> list[Color]:
    """One bright, distinct colour per limb, spread around the hue circle (same limb, same colour, every person)."""
    colors = []
    for i in range(num_limbs):
        r, g, b = colorsys.hsv_to_rgb(i / max(num_limbs, 1), 0.85, 1.0)
        colors.append((round(r * 255), round(g * 255), round(b * 255)))
    return colors


def resolve_skeleton(skeleton: SkeletonLike, dataset: int | str | None = None) -> list[tuple[int, int]]:
    """Skeleton edges from a layout, a model config (its `dataset` head) or a plain list of index pairs."""
    return _skeleton_and_names(skeleton, dataset)[0]


def _skeleton_and_names(skeleton: SkeletonLike, dataset: int | str | None) -> tuple[list[tuple[int, int]], list | None]:
    if isinstance(skeleton, VitPoseConfig):
        skeleton = skeleton.layout(dataset)
    if isinstance(skeleton, KeypointLayout):
        return [tuple(edge) for edge in skeleton.skeleton], list(skeleton.keypoints)
    edges = []
    for index, edge in enumerate(skeleton):
        if len(edge) != 2:
            raise ValueError(f"Skeleton edge {index} must be a pair of keypoint indices, got {edge!r}.")
        edges.append((int(edge[0]), int(edge[1])))
    return edges, None


def _as_array(values: Any, dtype: type) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, from return_tensors=True
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


def full_pose(person: dict, names: Sequence[str] | None, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A person's keypoints (K, 2) and scores (K,) in layout order.

    Results filtered with a score `threshold` keep only some keypoints, named by `labels`: they are put back at their
    layout positions, the missing ones with NaN coordinates and score -inf (never drawn, never confident).
    """
    keypoints = _as_array(person["keypoints"], np.float64).reshape(-1, 2)
    scores = _as_array(person["scores"], np.float64).reshape(-1)
    if len(scores) != len(keypoints):
        raise ValueError(f"Person {index} has {len(keypoints)} keypoints but {len(scores)} scores.")
    labels = person.get("labels")
    if names is None or labels is None or list(labels) == list(names):
        return keypoints, scores
    labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
    if len(labels) != len(keypoints):
        raise ValueError(f"Person {index} has {len(keypoints)} keypoints but {len(labels)} labels.")
    positions = []
    for label in labels:
        if isinstance(label, str):
            if label not in names:
                raise ValueError(f"Person {index} has keypoint {label!r}, which the skeleton's layout does not know.")
            positions.append(names.index(label))
        else:
            positions.append(int(label))
    full_keypoints = np.full((len(names), 2), np.nan)
    full_scores = np.full(len(names), -np.inf)
    full_keypoints[positions] = keypoints
    full_scores[positions] = scores
    return full_keypoints, full_scores


def draw_pose(
    image: Image.Image,
    people: Sequence[dict],
    skeleton: SkeletonLike,
    threshold: float = 0.3,
    dataset: int | str | None = None,
    radius: int | None = None,
    line_width: int | None = None,
    draw_boxes: bool = True,
) -> Image.Image:
    """Return a copy of `image` with each person's limbs, joints (and box) drawn on it.

    Args:
        image: the picture the results belong to.
        people: one image's pipeline result, a list of {"keypoints", "scores", "bbox", ...}.
        skeleton: a `KeypointLayout`, a `VitPoseConfig` (then `dataset` picks the head) or index pairs.
        threshold: joints scoring below it are not drawn, nor are limbs touching them.
        radius, line_width: joint radius and limb width in pixels; by default they follow the image size.
    """
    edges, names = _skeleton_and_names(skeleton, dataset)
    colors = limb_colors(len(edges))
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    side = max(canvas.size)
    radius = radius if radius is not None else max(2, round(side / 160))
    line_width = line_width if line_width is not None else max(1, round(side / 240))

    for index, person in enumerate(people):
        keypoints, scores = full_pose(person, names, index)
        num_keypoints = len(keypoints)
        visible = scores >= threshold
        joint_colors: dict[int, Color] = {}

        if draw_boxes and person.get("bbox") is not None:
            x0, y0, x1, y1 = (float(v) for v in _as_array(person["bbox"], np.float64).reshape(4))
            draw.rectangle((x0, y0, x1, y1), outline=BOX_COLOR, width=max(1, line_width // 2))

        for (a, b), color in zip(edges, colors):
            if a >= num_keypoints or b >= num_keypoints:
                raise ValueError(
                    f"Skeleton edge ({a}, {b}) does not fit person {index}, who has {num_keypoints} keypoints."
                )
            joint_colors.setdefault(a, color)
            joint_colors.setdefault(b, color)
            if visible[a] and visible[b]:
                draw.line((tuple(keypoints[a]), tuple(keypoints[b])), fill=color, width=line_width)

        for k in np.flatnonzero(visible):
            x, y = keypoints[k]
            fill = joint_colors.get(int(k), JOINT_WITHOUT_LIMB_COLOR)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=fill, outline=(0, 0, 0))
    return canvas


def to_supervision_keypoints(people: Sequence[dict], layout: KeypointLayout | None = None) -> dict[str, np.ndarray]:
    """One image's results as the arrays of `supervision.KeyPoints(**arrays)`.

    Returns `xy` (N, K, 2) float32, `confidence` (N, K) float32 and `class_id` (N,) int64 (0: every detection is a
    person of the same keypoint layout). With nobody found, N is 0 (and K too, or the layout's K). Results filtered
    by a score threshold need the `layout` to put their keypoints back in place; missing ones get xy 0, confidence 0.
    """
    names = list(layout.keypoints) if layout is not None else None
    if len(people) == 0:
        k = len(names) if names is not None else 0
        return {
            "xy": np.zeros((0, k, 2), dtype=np.float32),
            "confidence": np.zeros((0, k), dtype=np.float32),
            "class_id": np.zeros((0,), dtype=np.int64),
        }
    poses = [full_pose(person, names, index) for index, person in enumerate(people)]
    for index, (points, _) in enumerate(poses):
        if len(points) != len(poses[0][0]):
            raise ValueError(
                f"Person {index} has {len(points)} keypoints; person 0 has {len(poses[0][0])}. All people of one "
                "image must share a keypoint layout (pass `layout` for threshold-filtered results)."
            )
    xy = np.stack([np.nan_to_num(points, nan=0.0) for points, _ in poses]).astype(np.float32)
    confidence = np.stack([np.where(np.isfinite(scores), scores, 0.0) for _, scores in poses]).astype(np.float32)
    return {"xy": xy, "confidence": confidence, "class_id": np.zeros((len(people),), dtype=np.int64)}


__all__ = ["draw_pose", "full_pose", "limb_colors", "resolve_skeleton", "to_supervision_keypoints"]
