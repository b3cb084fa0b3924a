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
    if isinstance(skeleton, VitPoseConfig):
        skeleton = skeleton.layout(dataset)
    if isinstance(skeleton, KeypointLayout):
        return [tuple(edge) for edge in skeleton.skeleton]
    edges = []
    for index, edge in enumerate(skeleton):
        if len(edge) != 2:
            raise ValueError(f"Skeleton edge {index} must be a pair of keypoint indices, got {edge!r}.")
        edges.append((int(edge[0]), int(edge[1])))
    return edges


def _as_array(values: Any, dtype: type) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor, from return_tensors=True
        values = values.detach().cpu().numpy()
    return np.asarray(values, dtype=dtype)


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
    edges = resolve_skeleton(skeleton, dataset)
    colors = limb_colors(len(edges))
    canvas = image.convert("RGB").copy()
    draw = ImageDraw.Draw(canvas)
    side = max(canvas.size)
    radius = radius if radius is not None else max(2, round(side / 160))
    line_width = line_width if line_width is not None else max(1, round(side / 240))

    for index, person in enumerate(people):
        keypoints = _as_array(person["keypoints"], np.float64).reshape(-1, 2)
        scores = _as_array(person["scores"], np.float64).reshape(-1)
        if len(scores) != len(keypoints):
            raise ValueError(f"Person {index} has {len(keypoints)} keypoints but {len(scores)} scores.")
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


def to_supervision_keypoints(people: Sequence[dict]) -> dict[str, np.ndarray]:
    """One image's results as the arrays of `supervision.KeyPoints(**arrays)`.

    Returns `xy` (N, K, 2) float32, `confidence` (N, K) float32 and `class_id` (N,) int64 (0: every detection is a
    person of the same keypoint layout). With nobody found, N is 0 (and K too).
    """
    if len(people) == 0:
        return {
            "xy": np.zeros((0, 0, 2), dtype=np.float32),
            "confidence": np.zeros((0, 0), dtype=np.float32),
            "class_id": np.zeros((0,), dtype=np.int64),
        }
    xy = [_as_array(person["keypoints"], np.float32).reshape(-1, 2) for person in people]
    confidence = [_as_array(person["scores"], np.float32).reshape(-1) for person in people]
    for index, (points, scores) in enumerate(zip(xy, confidence)):
        if len(points) != len(xy[0]) or len(scores) != len(points):
            raise ValueError(
                f"Person {index} has {len(points)} keypoints and {len(scores)} scores; person 0 has {len(xy[0])} "
                "keypoints. All people of one image must share a keypoint layout."
            )
    return {
        "xy": np.stack(xy),
        "confidence": np.stack(confidence),
        "class_id": np.zeros((len(people),), dtype=np.int64),
    }


__all__ = ["draw_pose", "limb_colors", "resolve_skeleton", "to_supervision_keypoints"]
