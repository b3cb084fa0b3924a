"""The ViTPose training augmentation (mmpose 0.x top-down pipeline), seeded per sample.

Order and constants follow the original release:

1. center jitter: with p=0.3 the box centre moves by up to +-0.2 of the box width/height (the original does this
   once, when it builds its database; here it is redrawn every epoch like every other augmentation);
2. horizontal flip with p=0.5 (joints swapped with the layout's flip pairs, `x -> W - 1 - x`);
3. half-body with p=0.3 when more than 8 joints are labelled: the crop is the upper or the lower body's joint box,
   widened to the crop aspect ratio and enlarged 1.5x (datasets whose layout has `half_body=False`, MPII, skip it);
4. scale `clip(randn * 0.5 + 1, 0.5, 1.5)` and, with p=0.6, rotation `clip(randn * 40, -80, 80)` degrees;
5. the affine crop, ImageNet normalisation, Gaussian targets and target weights, all as the head's `HeadCodec` says:
   UDP crop and targets, or the standard crop and MSRA targets.

The geometry (box -> crop box, warp matrix, bilinear warp) comes from `vitpose_hf.geometry` and the targets from
`vitpose_hf.codec`, the code the image processor uses at inference, so training and test crops cannot drift apart. The flip is folded into the
warp matrix instead of mirroring the pixels: the same crop, one resampling fewer.

Every sample's randomness comes from `(seed, epoch, dataset_index, sample_index)`, so an epoch is reproducible
whatever the number of DataLoader workers or processes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..codec import HeadCodec, build_codec
from ..geometry import box_to_center_scale, get_crop_matrix, warp_affine
from ..images import decode_image_bytes, open_image_file
from ..images import load_image as load_image_value
from ..keypoints import KeypointLayout, get_layout

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# For custom layouts that declare no `upper_body_ids`: keypoints whose name contains one of these are lower body.
# A guess from names only; the built-in layouts declare the original's split explicitly.
LOWER_BODY_WORDS = ("hip", "knee", "ankle", "pelvis", "toe", "heel", "tail", "b_paw")


def default_upper_body_ids(layout: str | KeypointLayout) -> list[int] | None:
    """Upper-body keypoint indices for the half-body augmentation, or None when the layout has no upper/lower split.

    The layout's `upper_body_ids` when declared (every built-in layout), else a guess from the keypoint names (see
    `LOWER_BODY_WORDS`). A layout whose names are all upper or all lower body gets None (half-body is skipped).
    """
    layout = get_layout(layout)
    if layout.upper_body_ids is not None:
        return list(layout.upper_body_ids)
    upper = [i for i, name in enumerate(layout.keypoints) if not any(w in name.lower() for w in LOWER_BODY_WORDS)]
    if not upper or len(upper) == layout.num_keypoints:
        return None
    return upper


def load_image(path: str | Path, annotation_id: Any = None) -> np.ndarray:
    """An image file as an RGB uint8 (H, W, 3) array; errors name the file and the annotation."""
    try:
        return np.asarray(open_image_file(path, "Image"))
    except (OSError, ValueError) as error:
        raise OSError(f"{error} (annotation id {annotation_id})") from error


def sample_image(sample: Mapping[str, Any]) -> np.ndarray:
    """A sample's picture as RGB uint8 (H, W, 3): its in-row `image` when it has one, else the file `image_path`.

    Rows from `datasets` (`vitpose_hf.data.hf_datasets`) carry the picture itself: a PIL image (a decoded
    `datasets.Image` column), `{"bytes": ..., "path": ...}` (an undecoded one) or raw encoded bytes.
    """
    image = sample.get("image")
    if image is None:
        return load_image(sample["image_path"], sample.get("annotation_id"))
    what = f"Image of annotation id {sample.get('annotation_id')} (image id {sample.get('image_id')})"
    if isinstance(image, Mapping):
        if image.get("bytes") is None:
            if not image.get("path"):
                raise ValueError(f"{what}: the image value holds neither bytes nor a path.")
            return np.asarray(open_image_file(image["path"], what))
        image = image["bytes"]
    if isinstance(image, (bytes, bytearray, memoryview)):
        return np.asarray(decode_image_bytes(image, what))
    return np.asarray(load_image_value(image, 0))


@dataclass
class AugmentationParams:
    """What one sample's augmentation drew: the crop box (after jitter, half-body and scale), rotation and flip.

    `center` is in the coordinates of the (possibly mirrored) image, as in the original pipeline.
    """

    center: np.ndarray
    size: np.ndarray
    rotation: float = 0.0
    flip: bool = False
    half_body: bool = False
    scale: float = 1.0


class TopDownAugmentation:
    """Turns one keypoint sample (image path, box, keypoints) into model inputs, training targets and metadata.

    Args:
        layout: keypoint layout of the samples (flip pairs, upper/lower body split, whether half-body applies).
        input_size: (height, width) of the crop.
        heatmap_size: (height, width) of the target heatmaps.
        codec: the head's `HeadCodec` (crop and target encoding, sigma); None: UDP, sigma 2.
        train: draw the random augmentation; when False, the crop is the plain box crop of the image processor.
        seed: base seed; with `set_epoch` and the sample's (dataset_index, sample_index) it fixes every draw.
        padding: box enlargement (1.25).
        flip_prob, half_body_prob, half_body_min_joints, half_body_padding, center_jitter_prob, center_jitter,
            scale_factor, rotation_factor, rotation_prob: the recipe's constants (see the module docstring).
            `half_body_prob` is ignored for layouts with `half_body=False`.
        upper_body_ids: override the layout's upper-body keypoints for half-body (None: `default_upper_body_ids(layout)`).
        image_mean, image_std: normalisation of 0-1 pixel values.
    """

    def __init__(
        self,
        layout: str | KeypointLayout = "coco",
        input_size: tuple[int, int] = (256, 192),
        heatmap_size: tuple[int, int] = (64, 48),
        codec: HeadCodec | dict | None = None,
        train: bool = True,
        seed: int = 0,
        padding: float = 1.25,
        flip_prob: float = 0.5,
        half_body_prob: float = 0.3,
        half_body_min_joints: int = 8,
        half_body_padding: float = 1.5,
        center_jitter_prob: float = 0.3,
        center_jitter: float = 0.2,
        scale_factor: float = 0.5,
        rotation_factor: float = 40.0,
        rotation_prob: float = 0.6,
        upper_body_ids: Sequence[int] | None = None,
        image_mean: Sequence[float] = IMAGENET_MEAN,
        image_std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.layout = get_layout(layout)
        self.codec = build_codec(codec, input_size, heatmap_size)
        self.input_size = self.codec.input_size
        self.train = bool(train)
        self.seed = int(seed)
        self.epoch = 0
        self.padding = float(padding)
        self.flip_prob = float(flip_prob)
        self.half_body_prob = float(half_body_prob) if self.layout.half_body else 0.0
        self.half_body_min_joints = int(half_body_min_joints)
        self.half_body_padding = float(half_body_padding)
        self.center_jitter_prob = float(center_jitter_prob)
        self.center_jitter = float(center_jitter)
        self.scale_factor = float(scale_factor)
        self.rotation_factor = float(rotation_factor)
        self.rotation_prob = float(rotation_prob)
        k = self.layout.num_keypoints
        if upper_body_ids is None:
            upper_body_ids = default_upper_body_ids(self.layout)
        self.upper_body_mask = None
        if upper_body_ids is not None:
            ids = [int(i) for i in upper_body_ids]
            if any(not 0 <= i < k for i in ids):
                raise ValueError(f"upper_body_ids {ids} must lie in [0, {k}) for layout {self.layout.name!r}.")
            self.upper_body_mask = np.zeros(k, dtype=bool)
            self.upper_body_mask[ids] = True
        self.flip_index = np.asarray(self.layout.flip_index)
        self._multiplier = torch.tensor([1 / (255 * s) for s in image_std], dtype=torch.float32).view(3, 1, 1)
        self._offset = torch.tensor([m / s for m, s in zip(image_mean, image_std)], dtype=torch.float32).view(3, 1, 1)

    @property
    def aspect_ratio(self) -> float:
        return self.input_size[1] / self.input_size[0]

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations: call before each epoch (before the DataLoader iterator is created)."""
        self.epoch = int(epoch)

    def rng_for(self, dataset_index: int, sample_index: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, self.epoch, int(dataset_index), int(sample_index)])

    # Augmentation parameters --------------------------------------------------------------------------------------

    def sample_params(
        self, keypoints: np.ndarray, bbox: Sequence[float], image_width: int, rng: np.random.Generator | None
    ) -> AugmentationParams:
        """Draw one sample's crop box, flip and rotation (no randomness when `train` is False or `rng` is None)."""
        # float64 like the image processor's boxes, so that evaluation crops are bit-for-bit the same.
        center, size = box_to_center_scale(torch.tensor([list(bbox)], dtype=torch.float64), "xywh",
                                           self.aspect_ratio, self.padding)
        center, size = center[0].numpy(), size[0].numpy()
        params = AugmentationParams(center=center, size=size)
        if not self.train or rng is None:
            return params
        if rng.random() < self.center_jitter_prob:
            params.center = center + 2 * self.center_jitter * (rng.random(2) - 0.5) * np.asarray(bbox[2:4], float)
        visible = keypoints[:, 2] > 0
        if rng.random() < self.flip_prob:
            params.flip = True
            params.center = params.center.copy()
            params.center[0] = image_width - 1 - params.center[0]
            keypoints = self.flip_keypoints(keypoints, image_width)
            visible = keypoints[:, 2] > 0
        if (self.upper_body_mask is not None and visible.sum() > self.half_body_min_joints
                and rng.random() < self.half_body_prob):
            half = self._half_body_box(keypoints[:, :2], visible, rng)
            if half is not None:
                params.center, params.size, params.half_body = half[0], half[1], True
        params.scale = float(np.clip(rng.standard_normal() * self.scale_factor + 1,
                                     1 - self.scale_factor, 1 + self.scale_factor))
        params.size = params.size * params.scale
        rotation = float(np.clip(rng.standard_normal() * self.rotation_factor,
                                 -2 * self.rotation_factor, 2 * self.rotation_factor))
        params.rotation = rotation if rng.random() <= self.rotation_prob else 0.0
        return params

    def _half_body_box(
        self, joints: np.ndarray, visible: np.ndarray, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray] | None:
        upper = joints[visible & self.upper_body_mask]
        lower = joints[visible & ~self.upper_body_mask]
        # The original compares a *normal* draw with 0.5, so the upper body is chosen about 69% of the time.
        if rng.standard_normal() < 0.5 and len(upper) > 2:
            selected = upper
        elif len(lower) > 2:
            selected = lower
        else:
            selected = upper
        if len(selected) < 2:
            return None
        center = selected.mean(axis=0)
        w, h = selected.max(axis=0) - selected.min(axis=0)
        if w > self.aspect_ratio * h:
            h = w / self.aspect_ratio
        elif w < self.aspect_ratio * h:
            w = h * self.aspect_ratio
        return center, np.array([w, h]) * self.half_body_padding

    def flip_keypoints(self, keypoints: np.ndarray, image_width: int) -> np.ndarray:
        """Mirror (K, 3) keypoints in an image of `image_width` pixels and swap left/right joints."""
        flipped = keypoints[self.flip_index].copy()
        flipped[:, 0] = image_width - 1 - flipped[:, 0]
        return flipped

    def warp_matrix(self, params: AugmentationParams, image_width: int) -> np.ndarray:
        """(2, 3) matrix from original-image pixels to crop pixels (UDP or standard, per codec), the flip included."""
        matrix = get_crop_matrix(
            torch.tensor(params.center[None], dtype=torch.float64),
            torch.tensor(params.size[None], dtype=torch.float64),
            torch.tensor([params.rotation], dtype=torch.float64),
            self.input_size,
            udp=self.codec.settings.udp,
        )[0].numpy()
        if params.flip:
            mirror = np.array([[-1.0, 0.0, image_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
            matrix = matrix @ mirror
        return matrix

    # The transform ----------------------------------------------------------------------------------------------

    def __call__(
        self, sample: dict[str, Any], rng: np.random.Generator | None = None, image: np.ndarray | None = None
    ) -> dict[str, Any]:
        """One sample -> `pixel_values` (3, H, W), `labels` (K, h, w), `target_weight` (K,) and metadata.

        `rng` defaults to the sample's own generator (`rng_for(dataset_index, sample_index)`); `image` (RGB uint8
        H x W x 3) skips reading the picture (see `sample_image`: the row's `image`, else `image_path`).
        """
        keypoints = np.asarray(sample["keypoints"], dtype=np.float64).reshape(-1, 3)
        annotation_id = sample.get("annotation_id")
        if len(keypoints) != self.layout.num_keypoints:
            raise ValueError(
                f"Annotation id {annotation_id} ({sample.get('image_path')}) has {len(keypoints)} keypoints; layout "
                f"{self.layout.name!r} has {self.layout.num_keypoints}."
            )
        if image is None:
            image = sample_image(sample)
        height, width = image.shape[:2]
        dataset_index = int(sample.get("dataset_index", 0))
        if rng is None and self.train:
            rng = self.rng_for(dataset_index, int(sample.get("sample_index", 0)))
        params = self.sample_params(keypoints, sample["bbox"], width, rng)
        matrix = self.warp_matrix(params, width)

        crop = self.warp(image, matrix)
        # Normalising after the warp equals the image processor's normalise-while-warping (bilinear weights sum to
        # one, and the black border becomes the normalised value of black either way) and touches fewer pixels.
        pixel_values = torch.addcmul(-self._offset, crop, self._multiplier)

        joints = keypoints[self.flip_index] if params.flip else keypoints
        # Moved joints are stored as float32, as the original's joints_3d; the targets are then placed in float64.
        crop_xy = (joints[:, :2] @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)
        labels, target_weight = self.codec.encode(torch.from_numpy(crop_xy[None]), torch.from_numpy(joints[None, :, 2] > 0))
        return {
            "pixel_values": pixel_values,
            "labels": labels[0],
            "target_weight": target_weight[0],
            "dataset_index": dataset_index,
            "image_id": int(sample.get("image_id", -1)),
            "annotation_id": int(annotation_id if annotation_id is not None else -1),
            "bbox": torch.tensor(list(sample["bbox"]), dtype=torch.float32),
            "box_center": torch.from_numpy(params.center).to(torch.float32),
            "box_size": torch.from_numpy(params.size).to(torch.float32),
            "rotation": float(params.rotation),
            "flipped": bool(params.flip),
            "affine": torch.from_numpy(matrix).to(torch.float32),
            "keypoints": torch.from_numpy(np.concatenate([crop_xy, joints[:, 2:3]], axis=1).astype(np.float32)),
        }

    def warp(self, image: np.ndarray, matrix: np.ndarray) -> torch.Tensor:
        """Crop (3, H, W) float of an RGB uint8 image with `geometry.warp_affine`, reading only the pixels it needs.

        The crop's footprint in the image (plus the pixel bilinear interpolation reads beyond it) is cut out first
        and the matrix shifted accordingly: the same crop as warping the whole image, at a cost set by the crop
        instead of the image size.
        """
        height, width = image.shape[:2]
        out_h, out_w = self.input_size
        corners = np.array([[0, 0, 1], [out_w - 1, 0, 1], [0, out_h - 1, 1], [out_w - 1, out_h - 1, 1]], float)
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        footprint = corners @ inverse.T
        x0, y0 = np.clip(np.floor(footprint.min(axis=0)).astype(int) - 1, 0, [width, height])
        x1, y1 = np.clip(np.ceil(footprint.max(axis=0)).astype(int) + 2, 0, [width, height])
        if x1 <= x0 or y1 <= y0:  # the crop lies wholly outside the image: all border
            return torch.zeros(3, out_h, out_w)
        region = torch.from_numpy(np.array(image[y0:y1, x0:x1])).permute(2, 0, 1)  # a small, writable copy
        shifted = matrix.copy()
        shifted[:, 2] += matrix[:, :2] @ np.array([x0, y0], dtype=np.float64)
        return warp_affine(region, torch.from_numpy(shifted)[None], self.input_size)[0]

    def transform_batch(self, batch: dict[str, list]) -> dict[str, list]:
        """Column batch -> column batch: the function for `datasets.Dataset.with_transform`."""
        return apply_to_rows(self, batch)


def apply_to_rows(transform: Callable[[dict], dict], batch: dict[str, list]) -> dict[str, list]:
    """Run a per-sample transform over a column batch (what `datasets.Dataset.with_transform` hands over)."""
    outputs = [transform(dict(zip(batch, values))) for values in zip(*batch.values())]
    return {key: [out[key] for out in outputs] for key in (outputs[0] if outputs else {})}
