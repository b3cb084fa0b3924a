"""MPII and AI Challenger annotation formats -> COCO-format dicts, so that one loader handles every dataset.

- MPII, as the json files mmpose distributes (`mpii_train.json`): a list of people with `image`, `joints` (16 x 2,
  1-based MATLAB pixels), `joints_vis` (16 flags), `center` and `scale` (person height / 200). The box is the square
  of side `scale * 200` around the centre moved down by `15 * scale`, as the original crops MPII (the 1.25 padding
  is added later, as for every dataset).
- AI Challenger, as released (`keypoint_train_annotations_*.json`): a list of images with `image_id`,
  `keypoint_annotations` {human: 14 x (x, y, v)} and `human_annotations` {human: [x1, y1, x2, y2]}, visibility
  1 visible, 2 occluded, 3 not labelled (-> COCO 2, 1, 0). The COCO-format copy of AIC that mmpose uses
  (`aic_train.json`) needs no conversion: load it as "coco" with the "aic" layout.

Converted files keep no image sizes (the sources have none), so boxes are only clipped at 0.
"""

from __future__ import annotations

from typing import Any

from ..keypoints import get_layout

MPII_BOX_SHIFT = 15.0  # pixels per unit of scale the centre moves down (mmpose 0.x TopDownMpiiDataset)
AIC_VISIBILITY = {1: 2, 2: 1, 3: 0}


class AnnotationError(ValueError):
    """A problem with one annotation file or one annotation in it (the message names both)."""


def _category(layout_name: str) -> dict:
    layout = get_layout(layout_name)
    return {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(layout.keypoints),
            "skeleton": [[a + 1, b + 1] for a, b in layout.skeleton]}


def _number_list(value: Any, what: str) -> list[float]:
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError) as error:
        raise ValueError(f"{what} must be a list of numbers, got {value!r}.") from error


def mpii_to_coco(data: list[dict], source: str = "<mpii>") -> dict:
    """mmpose's MPII json (parsed) -> a COCO-format dict; annotation ids are 1-based entry positions."""
    if not isinstance(data, list):
        raise AnnotationError(f"MPII annotation file {source!r} must hold a JSON list of people.")
    images: dict[str, int] = {}
    annotations = []
    for position, entry in enumerate(data):
        ann_id = position + 1
        where = f"MPII annotation id {ann_id} (entry {position}) in {source!r}"
        if not isinstance(entry, dict) or any(key not in entry for key in ("image", "joints", "joints_vis", "center", "scale")):
            raise AnnotationError(f"{where} needs 'image', 'joints', 'joints_vis', 'center' and 'scale'.")
        try:
            joints = [_number_list(joint, "a joint") for joint in entry["joints"]]
            flags = _number_list(entry["joints_vis"], "joints_vis")
            center = _number_list(entry["center"], "center")
            scale = float(entry["scale"])
        except (TypeError, ValueError) as error:
            raise AnnotationError(f"{where}: {error}") from error
        if len(flags) != len(joints) or any(len(joint) != 2 for joint in joints) or len(center) != 2:
            raise AnnotationError(f"{where}: joints must be N x 2 with N joints_vis flags and center (x, y).")
        if center[0] != -1:
            center[1] += MPII_BOX_SHIFT * scale
        cx, cy = center[0] - 1, center[1] - 1  # MATLAB pixels are 1-based
        side = 200.0 * scale
        keypoints = []
        for (x, y), flag in zip(joints, flags):
            keypoints += [x - 1, y - 1, 2] if flag > 0 else [0.0, 0.0, 0]
        image_id = images.setdefault(str(entry["image"]), len(images) + 1)
        annotations.append({
            "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
            "bbox": [cx - side / 2, cy - side / 2, side, side], "area": side * side,
            "keypoints": keypoints, "num_keypoints": sum(1 for flag in flags if flag > 0),
        })
    return {
        "images": [{"id": i, "file_name": name} for name, i in images.items()],
        "annotations": annotations,
        "categories": [_category("mpii")],
    }


def aic_to_coco(data: list[dict], source: str = "<aic>") -> dict:
    """AI Challenger keypoint json (parsed) -> a COCO-format dict; images are `<image_id>.jpg`."""
    if not isinstance(data, list):
        raise AnnotationError(f"AI Challenger annotation file {source!r} must hold a JSON list of images.")
    images, annotations = [], []
    for position, entry in enumerate(data):
        if not isinstance(entry, dict) or any(key not in entry for key in ("image_id", "keypoint_annotations", "human_annotations")):
            raise AnnotationError(f"AI Challenger entry {position} in {source!r} needs 'image_id', "
                                  "'keypoint_annotations' and 'human_annotations'.")
        image_id = len(images) + 1
        images.append({"id": image_id, "file_name": f"{entry['image_id']}.jpg", "aic_image_id": entry["image_id"]})
        boxes = entry["human_annotations"]
        for human, raw in entry["keypoint_annotations"].items():
            ann_id = len(annotations) + 1
            where = f"AI Challenger annotation id {ann_id} ({entry['image_id']!r} {human}) in {source!r}"
            if human not in boxes:
                raise AnnotationError(f"{where} has keypoints but no box in 'human_annotations'.")
            try:
                values = _number_list(raw, "keypoints")
                x1, y1, x2, y2 = _number_list(boxes[human], "a box")
            except ValueError as error:
                raise AnnotationError(f"{where}: {error}") from error
            if len(values) % 3:
                raise AnnotationError(f"{where}: {len(values)} keypoint values is not a multiple of 3.")
            keypoints = []
            for i in range(0, len(values), 3):
                flag = AIC_VISIBILITY.get(int(values[i + 2]), 0)
                keypoints += [values[i], values[i + 1], flag] if flag else [0.0, 0.0, 0]
            annotations.append({
                "id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": max(0.0, (x2 - x1) * (y2 - y1)),
                "keypoints": keypoints, "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
            })
    return {"images": images, "annotations": annotations, "categories": [_category("aic")]}
