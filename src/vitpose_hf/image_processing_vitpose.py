"""VitPoseImageProcessor: (image, person boxes) -> model crops, and heatmaps -> keypoints in image pixels.

Top-down pose estimation as the original ViTPose does it: every person box becomes an affine crop of the image
(padding 1.25, aspect ratio from `size`), normalised with the ImageNet mean/std; the model's heatmaps are decoded
and mapped back through the same box. Crop and decoding follow the head's `HeadCodec` (`codec`): UDP crop and
DARK-UDP for heads trained with UDP, the standard crop and decoding for the others. The maths lives in
`geometry.py` and `codec.py`; this class handles inputs, validation and the per-image output structure. All boxes of
a call are warped and decoded together, in torch.

It reads the `preprocessor_config.json` of transformers' built-in ViTPose checkpoints (same keys) and returns the
same output structure from `post_process_pose_estimation`, with a real `bbox`.
"""

from __future__ import annotations

import math
import os
import numbers
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature
from transformers.image_utils import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from transformers.processing_utils import ImagesKwargs

from .boxes import boxes_per_image
from .codec import HeadCodec, build_codec, flip_images, merge_flip_test
from .geometry import box_to_center_scale, get_crop_matrix, warp_affine
from .images import to_rgb
from .keypoints import KeypointLayout, get_layout


class VitPoseImageProcessorKwargs(ImagesKwargs, total=False):
    """Settings that may be overridden per call or by `from_pretrained(..., key=value)`."""

    do_affine_transform: bool
    normalize_factor: float
    padding: float


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_positive_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def _check_settings(settings: dict[str, Any]) -> None:
    """Reject a setting of the wrong kind by name: `bool("False")` is True and padding 0 makes NaN crops."""
    for name in ("do_affine_transform", "do_rescale", "do_normalize"):
        if name in settings and not isinstance(settings[name], (bool, np.bool_)):
            raise ValueError(f"{name} must be True or False, got {settings[name]!r}.")
    for name in ("rescale_factor", "normalize_factor", "padding"):
        if name in settings and not _is_positive_number(settings[name]):
            raise ValueError(f"{name} must be a finite number > 0, got {settings[name]!r}.")
    kernel = settings.get("blur_kernel_size")
    if kernel is not None and (not _is_int(kernel) or kernel < 1 or kernel % 2 == 0):
        raise ValueError(f"blur_kernel_size must be an odd integer >= 1, got {kernel!r}.")


def _to_chw_tensor(image: Any, index: int) -> torch.Tensor:
    """One image (PIL, numpy HWC / HW, torch CHW / HW) -> (3, H, W) tensor of its own dtype, RGB."""
    if isinstance(image, Image.Image):
        if image.mode not in ("RGB", "L"):
            image = to_rgb(image)  # 16-bit and float modes scaled, not saturated to white
        image = torch.from_numpy(np.array(image))
        channels_last = True
    elif isinstance(image, np.ndarray):
        # Read-only arrays (e.g. np.asarray of a PIL image) are copied: torch tensors cannot share them.
        image = torch.from_numpy(np.ascontiguousarray(image) if image.flags.writeable else np.array(image))
        channels_last = image.ndim == 3 and image.shape[-1] in (1, 3, 4)
    elif isinstance(image, torch.Tensor):
        channels_last = image.ndim == 3 and image.shape[0] not in (1, 3, 4) and image.shape[-1] in (1, 3, 4)
    else:
        raise TypeError(f"Image {index} has unsupported type {type(image).__name__}: use PIL, numpy or torch.")
    if image.ndim == 2:
        image = image.unsqueeze(0)
    elif image.ndim == 3 and channels_last:
        image = image.permute(2, 0, 1)
    if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise ValueError(
            f"Image {index} has shape {tuple(image.shape)}: expected HxW, HxWxC (numpy) or CxHxW (torch), C in 1, 3, 4."
        )
    if image.shape[-1] == 0 or image.shape[-2] == 0:
        raise ValueError(f"Image {index} is empty: shape {tuple(image.shape)}.")
    if image.dtype == torch.bool:
        image = image.to(torch.uint8)
    elif image.dtype == torch.uint16:
        # 16-bit pixels (PNG I;16, uint16 arrays): to the 0-255 range `rescale_factor` expects, as the loader does.
        image = image.to(torch.float32).div_(257.0)
    if image.shape[0] == 1:
        return image.expand(3, -1, -1)
    return image[:3]  # RGBA: drop alpha


def _is_single_image(images: Any) -> bool:
    if isinstance(images, Image.Image):
        return True
    if isinstance(images, (np.ndarray, torch.Tensor)):
        return images.ndim <= 3
    return False


def _as_image_list(images: Any) -> list:
    if _is_single_image(images):
        return [images]
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    if isinstance(images, (list, tuple)):
        return list(images)
    raise TypeError(f"images must be an image or a list/batch of images, got {type(images).__name__}.")


class VitPoseHfImageProcessor(BaseImageProcessor):
    r"""
    Crops people out of images for ViTPose and turns its heatmaps back into keypoints.

    Public name `VitPoseImageProcessor`. The class itself is named apart from transformers' built-in
    `VitPoseImageProcessor`, because AutoImageProcessor finds processors by the class name saved in
    `preprocessor_config.json`: a shared name would hand this class to the built-in checkpoints too.

    Args:
        do_affine_transform: crop every box with the affine warp (else each image already is one crop of `size`).
        size: crop size `{"height": 256, "width": 192}`; its aspect ratio is the one boxes are widened to.
        do_rescale, rescale_factor: multiply pixel values by `rescale_factor` (1/255 for 0-255 images).
        do_normalize, image_mean, image_std: per-channel normalisation (ImageNet statistics by default).
        normalize_factor: the original's pixel_std (200): box `scale = size_in_pixels / normalize_factor`. Kept for
            compatibility with transformers' built-in configs; pixel sizes are used internally.
        padding: box enlargement before cropping (1.25 in ViTPose).
        codec: the default head's `HeadCodec` (dict): UDP or standard crop, decoding, flip-test shift. UDP when left
            out; `from_model_config` takes the model's first head. Methods take `codec=` for another head
            (`model.config.head_codec(name)`).
        blur_kernel_size: older configs' DARK blur kernel; folded into `codec`.
    """

    model_input_names = ["pixel_values"]
    valid_kwargs = VitPoseImageProcessorKwargs

    def __init__(
        self,
        do_affine_transform: bool = True,
        size: dict[str, int] | None = None,
        do_rescale: bool = True,
        rescale_factor: float = 1 / 255,
        do_normalize: bool = True,
        image_mean: Sequence[float] | None = None,
        image_std: Sequence[float] | None = None,
        normalize_factor: float = 200.0,
        padding: float = 1.25,
        codec: HeadCodec | dict | None = None,
        blur_kernel_size: int | None = None,
        **kwargs,
    ) -> None:
        kwargs.pop("image_processor_type", None)
        super().__init__(**kwargs)
        _check_settings(dict(
            do_affine_transform=do_affine_transform, do_rescale=do_rescale, do_normalize=do_normalize,
            rescale_factor=rescale_factor, normalize_factor=normalize_factor, padding=padding,
            blur_kernel_size=blur_kernel_size,
        ))
        self.do_affine_transform = bool(do_affine_transform)
        self.size = self._check_size(size if size is not None else {"height": 256, "width": 192})
        self.do_rescale = bool(do_rescale)
        self.rescale_factor = float(rescale_factor)
        self.do_normalize = bool(do_normalize)
        self.image_mean = [float(v) for v in (image_mean if image_mean is not None else IMAGENET_DEFAULT_MEAN)]
        self.image_std = [float(v) for v in (image_std if image_std is not None else IMAGENET_DEFAULT_STD)]
        self.normalize_factor = float(normalize_factor)
        self.padding = float(padding)
        codec = HeadCodec.from_dict(codec)
        if blur_kernel_size is not None:
            codec = HeadCodec.from_dict({**codec.to_dict(), "blur_kernel_size": int(blur_kernel_size)})
        self.codec = codec.to_dict()
        if len(self.image_mean) != 3 or len(self.image_std) != 3 or min(self.image_std) <= 0:
            raise ValueError(f"image_mean and image_std need 3 values (std > 0), got {self.image_mean}, {self.image_std}.")

    @staticmethod
    def _check_size(size: Any) -> dict[str, int]:
        if not isinstance(size, dict) or set(size) != {"height", "width"}:
            raise ValueError(f"size must be a dict with keys 'height' and 'width', got {size!r}.")
        if not all(_is_int(side) for side in size.values()):
            raise ValueError(f"size must hold integer 'height' and 'width', got {size!r}.")
        size = {"height": int(size["height"]), "width": int(size["width"])}
        if min(size.values()) < 2:
            raise ValueError(f"size must be at least 2x2 pixels, got {size}.")
        return size

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs) -> "VitPoseImageProcessor":
        """As `BaseImageProcessor.from_pretrained`; an invalid setting in the file is an error naming the file."""
        try:
            return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        except (TypeError, ValueError) as error:
            where = os.path.join(os.fspath(pretrained_model_name_or_path), "preprocessor_config.json")
            raise ValueError(f"Invalid image processor config {where}: {error}") from error

    @classmethod
    def from_model_config(cls, config, **kwargs) -> "VitPoseImageProcessor":
        """The processor matching a `VitPoseConfig`: crop size = the model's `image_size`, codec = its first head's."""
        height, width = config.image_size
        kwargs.setdefault("codec", config.head_codec(0).to_dict())
        return cls(size={"height": int(height), "width": int(width)}, **kwargs)

    def head_codec(self, codec: HeadCodec | dict | None = None) -> HeadCodec:
        """The codec of a call: the one given (a head's `HeadCodec`), else this processor's `codec`."""
        return HeadCodec.from_dict(codec if codec is not None else self.codec)

    @property
    def aspect_ratio(self) -> float:
        """Width / height of the crops: boxes are widened or heightened to it before cropping."""
        return self.size["width"] / self.size["height"]

    # Pre-processing ---------------------------------------------------------------------------------------------

    def __call__(self, images, boxes=None, **kwargs) -> BatchFeature:
        return self.preprocess(images, boxes, **kwargs)

    def preprocess(
        self,
        images: Any,
        boxes: Any = None,
        box_format: str = "xywh",
        return_tensors: str | None = "pt",
        device: str | torch.device | None = None,
        codec: HeadCodec | dict | None = None,
        **kwargs,
    ) -> BatchFeature:
        """Crop every person box of every image, as one batch.

        Args:
            images: one image or a list/batch of images: PIL, numpy HxWxC / HxW, torch CxHxW / HxW; RGB, grayscale
                or RGBA (alpha dropped); uint8 (0-255) or float (scaled by `rescale_factor` when `do_rescale`).
            boxes: per image, a list/array of person boxes (n, 4); for a single image the outer list may be left
                out. An image may have no boxes.
            box_format: "xywh" (COCO: top-left corner, width, height) or "xyxy" (corners), in image pixels.
            return_tensors: "pt" (default), "np" or None.
            device: where to crop (e.g. "cuda"); the outputs stay there.
            codec: the head's `HeadCodec` (UDP or standard crop); this processor's `codec` by default.
            kwargs: per-call overrides of the processor's settings (size, padding, image_mean, ...).

        Returns:
            `BatchFeature` with `pixel_values` (total boxes, 3, H, W) in image order, and for `post_process_pose_estimation`
            or custom decoding: `box_centers`, `box_sizes` (crop box in image pixels, (total, 2)) and `image_index`
            (total,), the image each crop comes from.
        """
        settings = self._settings(**kwargs)
        single = _is_single_image(images)
        image_list = _as_image_list(images)
        tensors = [_to_chw_tensor(image, i) for i, image in enumerate(image_list)]
        if device is not None:
            tensors = [t.to(device) for t in tensors]
        height, width = settings["size"]["height"], settings["size"]["width"]
        if settings["do_rescale"] and any(t.is_floating_point() and float(t.max()) <= 1.0 for t in tensors):
            warnings.warn(
                "Float images with values in [0, 1] are rescaled again by rescale_factor; pass do_rescale=False if "
                "they are already rescaled.",
                stacklevel=2,
            )

        multiplier, offset = self._normalization(settings, tensors[0].device if tensors else torch.device("cpu"))
        if settings["do_affine_transform"]:
            per_image = [torch.from_numpy(b) for b in boxes_per_image(boxes, len(tensors), single, box_format)]
            all_boxes = torch.cat(per_image) if per_image else torch.zeros(0, 4, dtype=torch.float64)
            image_index = torch.repeat_interleave(
                torch.arange(len(per_image)), torch.tensor([len(b) for b in per_image], dtype=torch.long)
            )
            center, box_size = box_to_center_scale(all_boxes, box_format, width / height, settings["padding"])
            matrices = get_crop_matrix(center, box_size, None, (height, width), udp=self.head_codec(codec).udp)
            # Normalising the (smaller) image as it is copied for the warp, with the border at the normalised value
            # of black, is the same as the original's warp-then-normalise (cv2 warps with a black border; bilinear
            # weights sum to one). The float warp itself differs from cv2's fixed-point uint8 warp by up to about
            # half a grey level.
            crops = warp_affine(
                tensors, matrices, (height, width), image_index=image_index, border_value=-offset, scale=multiplier,
                shift=-offset,
            )
        else:
            for i, t in enumerate(tensors):
                if tuple(t.shape[-2:]) != (height, width):
                    raise ValueError(
                        f"Image {i} is {tuple(t.shape[-2:])} but do_affine_transform=False needs crops of {(height, width)}."
                    )
            crops = torch.stack([t.to(torch.float32) for t in tensors]) if tensors else torch.zeros(0, 3, height, width)
            crops = crops.mul_(multiplier.view(1, 3, 1, 1)).sub_(offset)
            image_index = torch.arange(len(tensors))
            # The crop box that maps each image onto itself: UDP spans pixels 0 .. W-1, the standard crop W pixels.
            span = 1.0 if self.head_codec(codec).udp else 0.0
            center = torch.tensor([[(width - span) / 2, (height - span) / 2]]).expand(len(tensors), 2)
            box_size = torch.tensor([[width - span, height - span]]).expand(len(tensors), 2)

        data = {
            "pixel_values": crops,
            "box_centers": center.to(crops.device),
            "box_sizes": box_size.to(crops.device),
            "image_index": image_index.to(crops.device),
        }
        return BatchFeature(data=data, tensor_type=return_tensors)

    def _settings(self, **overrides) -> dict[str, Any]:
        names = ("do_affine_transform", "size", "do_rescale", "rescale_factor", "do_normalize", "image_mean",
                 "image_std", "padding")
        unknown = set(overrides) - set(names) - {"normalize_factor"}
        if unknown:
            raise TypeError(f"Unknown argument(s) for VitPoseImageProcessor.preprocess: {sorted(unknown)}.")
        _check_settings(overrides)
        settings = {name: overrides.get(name, getattr(self, name)) for name in names}
        settings["size"] = self._check_size(settings["size"])
        return settings

    @staticmethod
    def _normalization(settings: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-channel (multiplier (3,), offset (3, 1, 1)) with normalised = pixel * multiplier - offset."""
        scale = settings["rescale_factor"] if settings["do_rescale"] else 1.0
        mean, std = torch.zeros(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64)
        if settings["do_normalize"]:
            mean = torch.as_tensor(settings["image_mean"], dtype=torch.float64)
            std = torch.as_tensor(settings["image_std"], dtype=torch.float64)
            if mean.shape != (3,) or std.shape != (3,) or not bool((std > 0).all()):
                raise ValueError(f"image_mean and image_std need 3 values (std > 0), got {mean.tolist()}, {std.tolist()}.")
        multiplier = (scale / std).to(torch.float32).to(device)
        offset = (mean / std).to(torch.float32).to(device).view(3, 1, 1)
        return multiplier, offset

    # Flip test --------------------------------------------------------------------------------------------------

    @staticmethod
    def flip_pixel_values(pixel_values: torch.Tensor) -> torch.Tensor:
        """The mirrored crops of the flip test (run them through the model as a second batch)."""
        return flip_images(pixel_values)

    @staticmethod
    def flip_index(dataset: str | KeypointLayout | Sequence[int] | None, num_keypoints: int) -> list[int]:
        """Left/right mirror index of a keypoint layout given by name, `KeypointLayout` or explicit index list."""
        if dataset is None:
            if num_keypoints != 17:
                raise ValueError(f"Heatmaps have {num_keypoints} keypoints: pass `dataset` (a layout name) for the flip test.")
            dataset = "coco"
        if isinstance(dataset, (str, dict, KeypointLayout)):
            index = get_layout(dataset).flip_index
        else:
            index = [int(i) for i in dataset]
        if sorted(index) != list(range(num_keypoints)):
            raise ValueError(f"Flip index {index} does not match {num_keypoints} keypoints.")
        return index

    def merge_flipped_heatmaps(
        self,
        heatmaps: torch.Tensor,
        flipped_heatmaps: torch.Tensor,
        dataset: str | KeypointLayout | Sequence[int] | None = None,
        codec: HeadCodec | dict | None = None,
    ) -> torch.Tensor:
        """Average heatmaps with those of the mirrored crops, flipped back, left/right swapped and, where the head's
        codec says `shift_heatmap`, shifted one pixel right."""
        if flipped_heatmaps.shape != heatmaps.shape:
            raise ValueError(f"Flipped heatmaps {tuple(flipped_heatmaps.shape)} differ from heatmaps {tuple(heatmaps.shape)}.")
        return merge_flip_test(heatmaps, flipped_heatmaps, self.flip_index(dataset, heatmaps.shape[1]),
                               shift_heatmap=self.head_codec(codec).shift_heatmap)

    # Post-processing --------------------------------------------------------------------------------------------

    @staticmethod
    def _heatmaps_of(outputs: Any, what: str) -> torch.Tensor:
        heatmaps = outputs.get("heatmaps") if isinstance(outputs, dict) else getattr(outputs, "heatmaps", outputs)
        if isinstance(heatmaps, np.ndarray):
            heatmaps = torch.from_numpy(heatmaps)
        if not isinstance(heatmaps, torch.Tensor) or heatmaps.ndim != 4:
            raise ValueError(f"{what} must be a model output with `.heatmaps` or a (N, K, H, W) tensor.")
        return heatmaps

    def post_process_pose_estimation(
        self,
        outputs: Any,
        boxes: Any,
        box_format: str = "xywh",
        threshold: float | None = None,
        flipped_outputs: Any = None,
        dataset: str | KeypointLayout | Sequence[int] | None = None,
        codec: HeadCodec | dict | None = None,
    ) -> list[list[dict[str, torch.Tensor]]]:
        """Heatmaps -> per image, a list of people `{"keypoints": (K, 2), "scores": (K,), "labels": (K,), "bbox": (4,)}`.

        Args:
            outputs: the model output (with `.heatmaps`) or the (total boxes, K, h, w) heatmaps, in the order of
                `preprocess`.
            boxes: the boxes given to `preprocess` (same nesting and `box_format`).
            threshold: keep only keypoints whose score is above it (as transformers' built-in does).
            flipped_outputs: heatmaps of the mirrored crops (`flip_pixel_values`); averaged in after flipping back.
            dataset: keypoint layout (name, `KeypointLayout` or flip index) for the flip test; COCO by default.
            codec: the head's `HeadCodec` (decoding, back-transform, flip-test shift), as given to `preprocess`;
                this processor's `codec` by default.

        Returns:
            Keypoints in image pixels (x, y), raw heatmap maxima as scores, keypoint indices as labels and the person
            box as `bbox` (x1, y1, x2, y2), all CPU tensors.
        """
        heatmaps = self._heatmaps_of(outputs, "outputs")
        if flipped_outputs is not None:
            heatmaps = self.merge_flipped_heatmaps(
                heatmaps, self._heatmaps_of(flipped_outputs, "flipped_outputs"), dataset, codec
            )
        per_image = [torch.from_numpy(b) for b in boxes_per_image(boxes, None, False, box_format)]
        all_boxes = torch.cat(per_image) if per_image else torch.zeros(0, 4, dtype=torch.float64)
        if len(all_boxes) != heatmaps.shape[0]:
            raise ValueError(f"Got heatmaps for {heatmaps.shape[0]} crops but {len(all_boxes)} boxes.")

        center, box_size = box_to_center_scale(all_boxes, box_format, self.aspect_ratio, self.padding)
        decoder = build_codec(
            self.head_codec(codec), (self.size["height"], self.size["width"]), tuple(heatmaps.shape[-2:])
        )
        keypoints, scores = decoder.decode_to_image(heatmaps, center.to(heatmaps.device), box_size.to(heatmaps.device))
        keypoints, scores = keypoints.cpu(), scores.cpu().to(torch.float32)
        xyxy = all_boxes.to(torch.float32)
        if box_format == "xywh":
            xyxy = torch.cat([xyxy[:, :2], xyxy[:, :2] + xyxy[:, 2:]], dim=1)
        labels = torch.arange(heatmaps.shape[1])

        results: list[list[dict[str, torch.Tensor]]] = []
        start = 0
        for image_boxes in per_image:
            people = []
            for n in range(start, start + len(image_boxes)):
                person = {"keypoints": keypoints[n], "scores": scores[n], "labels": labels, "bbox": xyxy[n]}
                if threshold is not None:
                    keep = person["scores"] > threshold
                    person.update(keypoints=keypoints[n][keep], scores=scores[n][keep], labels=labels[keep])
                people.append(person)
            results.append(people)
            start += len(image_boxes)
        return results


VitPoseImageProcessor = VitPoseHfImageProcessor

__all__ = ["VitPoseHfImageProcessor", "VitPoseImageProcessor"]
