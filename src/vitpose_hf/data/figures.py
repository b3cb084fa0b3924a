"""Synthetic people: the body model, random poses, rendering with per-joint markers, scenes with occlusion.

The pieces both synthetic generators share (`synthetic` for still images, `synthetic_video` for videos with known
tracks); see `vitpose_hf.data.synthetic` for what the pictures are made to teach.
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

from ..keypoints import KeypointLayout, get_layout

Color = tuple[int, int, int]

# Every point the body model knows. A layout can be synthesised when all its keypoint names are among these
# (after the aliases below): COCO, MPII, AI Challenger, CrowdPose, OCHuman and custom human subsets.
BODY_POINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
    "neck", "head_top", "upper_neck", "thorax", "pelvis",
)
POINT_ALIASES = {"top_head": "head_top", "head": "head_top", "mid_hip": "pelvis", "root": "pelvis"}
FACE_POINTS = ("nose", "left_eye", "right_eye")

# Limbs of the body model: (from, to, length in head units, width in head units).
_ARM = (("shoulder", "elbow", 1.45, 0.46), ("elbow", "wrist", 1.25, 0.38))
_LEG = (("hip", "knee", 1.95, 0.62), ("knee", "ankle", 1.85, 0.48))


def _marker_palette() -> dict[str, Color]:
    """One saturated colour per body point, spread around the hue circle (golden-ratio steps) at two brightnesses."""
    palette = {}
    for i, name in enumerate(BODY_POINTS):
        hue = (i * 0.618034) % 1.0
        value = 1.0 if i % 3 else 0.62
        r, g, b = colorsys.hsv_to_rgb(hue, 1.0 if i % 2 else 0.8, value)
        palette[name] = (round(r * 255), round(g * 255), round(b * 255))
    return palette


MARKER_COLORS: dict[str, Color] = _marker_palette()


def body_point_names(layout: str | KeypointLayout) -> list[str]:
    """The body-model point behind each keypoint of `layout`; raises if the layout has non-body keypoints."""
    layout = get_layout(layout)
    names = [POINT_ALIASES.get(name.lower(), name.lower()) for name in layout.keypoints]
    unknown = [orig for orig, name in zip(layout.keypoints, names) if name not in BODY_POINTS]
    if unknown:
        raise ValueError(
            f"The synthetic generator draws human bodies; layout {layout.name!r} has keypoints it cannot place: "
            f"{unknown}. Supported names: {list(BODY_POINTS)} (aliases {POINT_ALIASES})."
        )
    return names


def keypoint_colors(layout: str | KeypointLayout) -> list[Color]:
    """Marker colour of each keypoint of `layout` (what a drawn joint looks like at its annotated location)."""
    return [MARKER_COLORS[name] for name in body_point_names(layout)]


@dataclass
class SyntheticPerson:
    """One posed figure in image pixels: body-model points, drawing sizes and colours.

    `points` maps every name of `BODY_POINTS` to an (x, y) float position; `facing_front` says whether the face
    is visible; sizes are in pixels.
    """

    points: dict[str, np.ndarray]
    head_radius: float
    limb_widths: dict[str, float]
    facing_front: bool
    left_color: Color
    right_color: Color
    torso_color: Color
    skin_color: Color
    hair_color: Color
    marker_radius: float
    face_marker_radius: float
    torso_polygon: list[tuple[float, float]] = field(default_factory=list)

    def translate(self, dx: float, dy: float) -> None:
        offset = np.array([dx, dy])
        for name in self.points:
            self.points[name] = self.points[name] + offset
        self.torso_polygon = [(x + dx, y + dy) for x, y in self.torso_polygon]

    def extent(self) -> tuple[float, float, float, float]:
        """Bounding box (x0, y0, x1, y1) of everything drawn for this person (before clipping to the image)."""
        xs, ys = [], []
        pad = max(self.limb_widths.values()) / 2 + 1
        for name, p in self.points.items():
            r = self.head_radius if name == "head_center" else pad
            xs += [p[0] - r, p[0] + r]
            ys += [p[1] - r, p[1] + r]
        for x, y in self.torso_polygon:
            xs.append(x)
            ys.append(y)
        return min(xs), min(ys), max(xs), max(ys)

    def keypoints(self, layout: str | KeypointLayout) -> np.ndarray:
        """(K, 2) positions of the layout's keypoints."""
        return np.stack([self.points[name] for name in body_point_names(layout)]).astype(np.float64)


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _rotate(vector: np.ndarray, degrees: float) -> np.ndarray:
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def sample_person(rng: np.random.Generator, height: float) -> SyntheticPerson:
    """A random pose for a figure about `height` pixels tall (head top to ankles when standing), pelvis at (0, 0).

    Joint angles are drawn from plausible ranges: torso lean, shoulder abduction from "arm along the body" to
    "arm raised", elbow and knee flexion, leg spread, head tilt, and a body yaw that narrows the shoulders and
    hips; limb lengths are shortened at random as if pointing towards the camera.
    """
    unit = height / 7.6  # head height; a standing adult is about 7.5 heads tall
    facing_front = bool(rng.random() < 0.8)
    yaw = math.radians(rng.uniform(-60, 60))
    lean = float(np.clip(rng.normal(0, 14), -50, 50))
    if rng.random() < 0.08:  # now and then someone bending far over or lying down
        lean = float(rng.choice([-1, 1]) * rng.uniform(50, 95))
    up = _rotate(np.array([0.0, -1.0]), lean)
    right_of_image = _rotate(np.array([1.0, 0.0]), lean)
    # Seen from the front, the person's left side is on the image's right.
    left_side = right_of_image if facing_front else -right_of_image
    width_factor = max(0.35, abs(math.cos(yaw)))

    pts: dict[str, np.ndarray] = {}
    pelvis = np.zeros(2)
    torso_length = unit * 2.9 * rng.uniform(0.9, 1.1)
    shoulder_half = unit * 0.95 * rng.uniform(0.85, 1.15) * width_factor
    hip_half = unit * 0.7 * rng.uniform(0.85, 1.15) * width_factor
    thorax = pelvis + up * torso_length
    pts["pelvis"] = pelvis
    pts["thorax"] = thorax
    for sign, side in ((1, "left"), (-1, "right")):
        pts[f"{side}_shoulder"] = thorax + sign * left_side * shoulder_half
        pts[f"{side}_hip"] = pelvis + sign * left_side * hip_half

    head_radius = unit * 0.55 * rng.uniform(0.9, 1.1)
    head_up = _rotate(up, float(np.clip(rng.normal(0, 12), -35, 35)))
    pts["neck"] = thorax + up * unit * 0.3
    pts["upper_neck"] = thorax + head_up * unit * 0.55
    head_center = pts["upper_neck"] + head_up * head_radius * 0.95
    pts["head_center"] = head_center
    pts["head_top"] = head_center + head_up * head_radius
    head_right = _rotate(head_up, 90.0)  # image-right direction of the head
    face_side = head_right if facing_front else -head_right
    turn = math.sin(yaw)
    pts["nose"] = head_center + head_right * head_radius * 0.5 * turn - head_up * head_radius * 0.15
    for sign, side in ((1, "left"), (-1, "right")):
        sx = face_side * sign
        pts[f"{side}_eye"] = head_center + sx * head_radius * 0.38 * width_factor + head_right * head_radius * 0.35 * turn + head_up * head_radius * 0.22
        pts[f"{side}_ear"] = head_center + sx * head_radius * 0.92 * width_factor + head_right * head_radius * 0.1 * turn

    down = -up
    limb_widths = {}
    for sign, side in ((1, "left"), (-1, "right")):
        outward = sign * left_side
        # Arm: abduction measured from "hanging down" towards "raised sideways"; the elbow bends either way.
        abduction = rng.uniform(-15, 165) if rng.random() < 0.85 else rng.uniform(-40, 30)
        direction = math.cos(math.radians(abduction)) * down + math.sin(math.radians(abduction)) * outward
        flex = rng.uniform(0, 135) * rng.choice([-1, 1])
        for (a, b, length, width), bend in zip(_ARM, (0.0, flex)):
            direction = _rotate(direction, bend)
            foreshorten = rng.uniform(0.7, 1.0) if rng.random() < 0.4 else 1.0
            pts[f"{side}_{b}"] = pts[f"{side}_{a}"] + direction * unit * length * rng.uniform(0.9, 1.1) * foreshorten
            limb_widths[f"{side}_{a}"] = unit * width * rng.uniform(0.8, 1.2)
        # Leg: spread sideways, the knee bends less and mostly outward.
        spread = float(np.clip(rng.normal(6, 12), -15, 75))
        direction = math.cos(math.radians(spread)) * down + math.sin(math.radians(spread)) * outward
        knee = float(np.clip(rng.normal(0, 20), -40, 80)) * sign * (1 if facing_front else -1)
        for (a, b, length, width), bend in zip(_LEG, (0.0, knee)):
            direction = _rotate(direction, bend)
            foreshorten = rng.uniform(0.6, 1.0) if rng.random() < 0.25 else 1.0
            pts[f"{side}_{b}"] = pts[f"{side}_{a}"] + direction * unit * length * rng.uniform(0.9, 1.1) * foreshorten
            limb_widths[f"{side}_{a}"] = unit * width * rng.uniform(0.8, 1.2)

    # Torso outline: shoulders and hips pushed slightly outward so the joints sit inside the body.
    pad_shoulder, pad_hip = unit * 0.25, unit * 0.3
    torso_polygon = [
        tuple(pts["left_shoulder"] + left_side * pad_shoulder + up * unit * 0.1),
        tuple(pts["right_shoulder"] - left_side * pad_shoulder + up * unit * 0.1),
        tuple(pts["right_hip"] - left_side * pad_hip - up * unit * 0.25),
        tuple(pts["left_hip"] + left_side * pad_hip - up * unit * 0.25),
    ]
    limb_widths["neck"] = unit * 0.45

    left_hue = rng.uniform(0.55, 0.7)  # blue tones
    right_hue = rng.uniform(-0.03, 0.07)  # red tones
    skin = [(255, 220, 185), (240, 190, 150), (200, 150, 110), (150, 100, 70), (100, 70, 50)][int(rng.integers(5))]
    return SyntheticPerson(
        points=pts,
        head_radius=head_radius,
        limb_widths=limb_widths,
        facing_front=facing_front,
        left_color=_hsv(left_hue, rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.95)),
        right_color=_hsv(right_hue, rng.uniform(0.45, 0.9), rng.uniform(0.45, 0.95)),
        torso_color=_hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.25, 0.9)),
        skin_color=tuple(int(np.clip(c + rng.integers(-15, 16), 0, 255)) for c in skin),
        hair_color=_hsv(rng.uniform(0.0, 0.12), rng.uniform(0.3, 0.8), rng.uniform(0.08, 0.35)),
        marker_radius=max(2.5, unit * 0.2),
        face_marker_radius=max(2.0, unit * 0.11),
        torso_polygon=torso_polygon,
    )


def _capsule(draws: list[tuple[ImageDraw.ImageDraw, object]], a: np.ndarray, b: np.ndarray, width: float) -> None:
    """A thick segment with round ends, drawn with each (draw, fill) pair."""
    r = width / 2
    for draw, fill in draws:
        draw.line([tuple(a), tuple(b)], fill=fill, width=max(1, round(width)))
        for p in (a, b):
            draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=fill)


def _disk(draws: list[tuple[ImageDraw.ImageDraw, object]], p: np.ndarray, r: float, outline: bool = False) -> None:
    for draw, fill in draws:
        box = [p[0] - r, p[1] - r, p[0] + r, p[1] + r]
        if outline and isinstance(fill, tuple):
            draw.ellipse([p[0] - r - 1, p[1] - r - 1, p[0] + r + 1, p[1] + r + 1], fill=(0, 0, 0))
        draw.ellipse(box, fill=fill)


def _shade(color: Color, factor: float) -> Color:
    return tuple(int(min(255, c * factor)) for c in color)


def render_person(
    image: Image.Image,
    person: SyntheticPerson,
    layout: str | KeypointLayout = "coco",
    id_mask: Image.Image | None = None,
    mask_value: int = 1,
) -> None:
    """Draw `person` on `image` (RGB, in place), with a marker of `keypoint_colors(layout)` on every keypoint.

    When `id_mask` (mode "L") is given, the same shapes are drawn on it with `mask_value`, which is how the
    generator knows which joints are hidden by people or objects drawn later. Limbs on the far side of the body
    are drawn first; markers last, so each person's own joints are never hidden by its own limbs.
    """
    layout = get_layout(layout)
    names = body_point_names(layout)
    pts = person.points
    draw = ImageDraw.Draw(image)
    mask_draw = ImageDraw.Draw(id_mask) if id_mask is not None else None

    def with_mask(fill: Color) -> list[tuple[ImageDraw.ImageDraw, object]]:
        return [(draw, fill)] + ([(mask_draw, mask_value)] if mask_draw is not None else [])

    def limbs(side: str, color: Color) -> None:
        dark = _shade(color, 0.7)
        for a, b, _, _ in _LEG + _ARM:
            width = person.limb_widths[f"{side}_{a}"]
            _capsule(with_mask(dark), pts[f"{side}_{a}"], pts[f"{side}_{b}"], width)
            _capsule([(draw, color)], pts[f"{side}_{a}"], pts[f"{side}_{b}"], max(1.0, width - 3))

    # One side behind the torso, the other in front of it.
    first, second = (("right", person.right_color), ("left", person.left_color))
    if not person.facing_front:
        first, second = second, first
    limbs(*first)
    for d, fill in with_mask(person.torso_color):
        d.polygon(person.torso_polygon, fill=fill)
    _capsule(with_mask(person.skin_color), pts["thorax"], pts["upper_neck"], person.limb_widths["neck"])
    limbs(*second)

    head = pts["head_center"]
    _disk(with_mask(person.skin_color if person.facing_front else person.hair_color), head, person.head_radius)
    if person.facing_front:
        # Eyes and mouth: the facing cue, also for layouts without face keypoints.
        r_eye = max(1.0, person.head_radius * 0.12)
        for side in ("left", "right"):
            _disk([(draw, (20, 20, 20))], pts[f"{side}_eye"], r_eye)
        mouth = pts["nose"] + (pts["nose"] - head) * 0.9
        _capsule([(draw, (120, 30, 30))], mouth - (pts["left_eye"] - pts["right_eye"]) * 0.25,
                 mouth + (pts["left_eye"] - pts["right_eye"]) * 0.25, max(1.0, person.head_radius * 0.1))

    for name in names:
        if name in FACE_POINTS and not person.facing_front:
            continue
        radius = person.face_marker_radius if name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear") else person.marker_radius
        _disk(with_mask(MARKER_COLORS[name]), pts[name], radius, outline=True)


def _background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """Smooth colour field + pixel noise + random clutter shapes (some limb-like, to be hard negatives)."""
    grid = rng.integers(0, 256, size=(int(rng.integers(2, 9)), int(rng.integers(2, 9)), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(grid).resize((width, height), Image.BILINEAR), dtype=np.float32)
    grey = base.mean(axis=-1, keepdims=True)
    base = (grey + (base - grey) * rng.uniform(0.2, 1.0)).astype(np.int16)  # not always fully saturated
    noise = rng.integers(-1, 2, size=(height, width, 1), dtype=np.int16) * int(rng.integers(0, 20))
    image = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(0, 7))):
        color = _hsv(rng.random(), rng.uniform(0, 0.7), rng.uniform(0.1, 0.95))
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.05, 0.3) * min(width, height)
        kind = rng.integers(3)
        if kind == 0:
            draw.rectangle([x, y, x + size, y + size * rng.uniform(0.3, 2)], fill=color)
        elif kind == 1:
            draw.ellipse([x, y, x + size, y + size * rng.uniform(0.3, 2)], fill=color)
        else:
            angle = rng.uniform(0, 2 * math.pi)
            draw.line([(x, y), (x + size * math.cos(angle), y + size * math.sin(angle))], fill=color,
                      width=int(rng.integers(2, 12)))
    return image


def _box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def annotated_keypoints(person: SyntheticPerson, names: list[str], owner: np.ndarray, index: int) -> np.ndarray:
    """(K, 3) COCO keypoints (x, y, visibility) of `person`, drawn with value `index` in the id buffer `owner`
    (H, W): 2 where its own pixel is on top, 1 where something drawn later hides it, 0 (and x = y = 0) outside the
    image or for a face point seen from the back."""
    height, width = owner.shape
    xy = np.stack([person.points[name] for name in names])
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    labelled = inside & np.array([person.facing_front or name not in FACE_POINTS for name in names])
    px = np.clip(np.round(xy[:, 0]).astype(int), 0, width - 1)
    py = np.clip(np.round(xy[:, 1]).astype(int), 0, height - 1)
    shown = owner[py, px] == index
    visibility = np.where(labelled, np.where(shown, 2, 1), 0)
    return np.concatenate([np.where(labelled[:, None], xy, 0.0), visibility[:, None]], axis=1)


def render_scene(
    rng: np.random.Generator,
    layout: str | KeypointLayout = "coco",
    image_size: tuple[int, int] = (256, 256),
    max_people: int = 3,
    min_height: float = 0.4,
    max_height: float = 0.9,
    truncation_prob: float = 0.25,
    occluder_prob: float = 0.3,
) -> tuple[Image.Image, list[dict]]:
    """One image and its people: list of dicts with `keypoints` (K, 3) (x, y, COCO visibility), `bbox` (xywh), `area`.

    Person heights are `min_height`..`max_height` of the image height; people overlap at most moderately (box
    IoU < 0.4); some are pushed partly out of the image (`truncation_prob`) and some get an object in front of
    them (`occluder_prob`).
    """
    layout = get_layout(layout)
    names = body_point_names(layout)
    width, height = int(image_size[0]), int(image_size[1])
    image = _background(rng, width, height)
    id_mask = Image.new("L", (width, height), 0)
    num_people = int(rng.integers(1, max(1, max_people) + 1))
    people: list[SyntheticPerson] = []
    extents: list[tuple[float, float, float, float]] = []
    for _ in range(num_people):
        for _attempt in range(10):
            person = sample_person(rng, rng.uniform(min_height, max_height) * height / 1.05)
            x0, y0, x1, y1 = person.extent()
            w, h = x1 - x0, y1 - y0
            if rng.random() < truncation_prob:
                left, top = rng.uniform(-0.4 * w, width - 0.6 * w), rng.uniform(-0.3 * h, height - 0.7 * h)
            else:
                left = rng.uniform(min(0.0, width - w), max(0.0, width - w))
                top = rng.uniform(min(0.0, height - h), max(0.0, height - h))
            box = (left, top, left + w, top + h)
            if all(_box_iou(box, other) < 0.4 for other in extents):
                person.translate(left - x0, top - y0)
                people.append(person)
                extents.append(box)
                break

    areas = []
    for index, person in enumerate(people, start=1):
        render_person(image, person, layout, id_mask, mask_value=index)
        x0, y0, x1, y1 = (int(math.floor(v)) for v in extents[index - 1])
        region = np.asarray(id_mask.crop((max(x0, 0), max(y0, 0), min(x1 + 2, width), min(y1 + 2, height))))
        areas.append(float(np.count_nonzero(region == index)))

    if people and rng.random() < occluder_prob:
        # An object in front of one person, hiding some of its joints.
        target = extents[int(rng.integers(len(extents)))]
        tw, th = target[2] - target[0], target[3] - target[1]
        ow, oh = tw * rng.uniform(0.3, 0.7), th * rng.uniform(0.15, 0.4)
        ox, oy = rng.uniform(target[0] - 0.2 * ow, target[2] - 0.8 * ow), rng.uniform(target[1], target[3] - oh)
        color = _hsv(rng.random(), rng.uniform(0, 0.8), rng.uniform(0.2, 0.9))
        shape = [ox, oy, ox + ow, oy + oh]
        for d, fill in ((ImageDraw.Draw(image), color), (ImageDraw.Draw(id_mask), 255)):
            (d.rectangle if rng.random() < 0.5 else d.ellipse)(shape, fill=fill)

    owner = np.asarray(id_mask)
    annotations = []
    for index, person in enumerate(people, start=1):
        keypoints = annotated_keypoints(person, names, owner, index)
        x0, y0, x1, y1 = extents[index - 1]
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        annotations.append({"keypoints": keypoints, "bbox": [x0, y0, x1 - x0, y1 - y0], "area": areas[index - 1]})
    return image, annotations


def coco_category(layout: str | KeypointLayout) -> dict:
    """The COCO `categories` entry of a layout (skeleton 1-based, as COCO writes it)."""
    layout = get_layout(layout)
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(layout.keypoints),
        "skeleton": [[a + 1, b + 1] for a, b in layout.skeleton],
    }
