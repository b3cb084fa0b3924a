"""The "keypoint-detection" pipeline: from images to every person's keypoints in one call.

    import vitpose_hf
    from transformers import pipeline

    pose = pipeline("keypoint-detection")                       # the model embedded in the package
    people = pose("street.jpg", detector="facebook/detr-resnet-50")
    people = pose(image, boxes=[[x, y, w, h], ...])             # or known boxes; neither: the whole image

Top-down pose estimation: each person box becomes one crop, the crops of all images are batched through the model
(`batch_size` crops per forward, twice that with the flip test) and every crop's heatmaps are decoded back into image
coordinates by the image processor. Built on transformers' `ChunkPipeline`: one chunk per crop, so batching, datasets
and generators behave as in every other pipeline.

Sharing: `pose.save_pretrained(folder)` (or `pose.push_to_hub(repo)`) writes the model, the image processor, this
code and a `custom_pipelines` entry in the config. Anyone then loads it with
`pipeline("keypoint-detection", model=repo, trust_remote_code=True)`, vitpose_hf installed or not; with vitpose_hf
installed, `pipeline_class=KeypointDetectionPipeline` uses the installed code instead. This module only imports sibling
modules of the package (relative, flat) so that the copied files work on their own.
"""

from __future__ import annotations

import atexit
import collections.abc
import inspect
import os
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from transformers import AutoModel
from transformers.image_utils import load_image
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline, Pipeline
from transformers.utils import ModelOutput

from .codec import flip_images
from .image_processing_vitpose import VitPoseImageProcessor, _is_box_list
from .inference_optimization import optimize_for_inference, resolve_dtype

TASK = "keypoint-detection"
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "embedded"
BOX_FORMATS = ("xywh", "xyxy")
DEFAULT_BATCH_SIZE = 8


# Default model ----------------------------------------------------------------------------------------------------
_FALLBACK_DIR: str | None = None


def default_model_path() -> str:
    """Folder of the model used when no model is given: the one embedded in the package.

    Where the embedded model is missing (a source checkout before training), a tiny untrained model is written to a
    temporary folder instead, with a warning: its keypoints are meaningless, but every code path runs.
    """
    if (EMBEDDED_MODEL_DIR / "config.json").is_file():
        return str(EMBEDDED_MODEL_DIR)
    warnings.warn(
        f"No embedded model in {EMBEDDED_MODEL_DIR}: using a tiny UNTRAINED ViTPose instead, whose keypoints are "
        "random. Train one (see README) or pass model=... (e.g. a converted official checkpoint).",
        UserWarning,
        stacklevel=2,
    )
    return _untrained_fallback_model()


def _untrained_fallback_model() -> str:
    global _FALLBACK_DIR
    if _FALLBACK_DIR is None or not os.path.isdir(_FALLBACK_DIR):
        from .configuration_vitpose import VitPoseConfig
        from .modeling_vitpose import VitPoseModel

        folder = tempfile.mkdtemp(prefix="vitpose_hf-untrained-")
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
        config = VitPoseConfig(
            hidden_size=64, num_hidden_layers=2, num_attention_heads=2, decoder_channels=32, drop_path_rate=0.0
        )
        with torch.random.fork_rng():
            torch.manual_seed(0)
            VitPoseModel(config).save_pretrained(folder)
        VitPoseImageProcessor.from_model_config(config).save_pretrained(folder)
        _FALLBACK_DIR = folder
    return _FALLBACK_DIR


class _LazyDefault(dict):
    """The registry's `{"model": (path, revision)}`, looked up only when `pipeline()` actually needs a default."""

    def __init__(self) -> None:
        super().__init__(model=None)

    def __getitem__(self, key: str) -> Any:
        if key == "model":
            return default_model_path(), None
        return super().__getitem__(key)


# Inputs -----------------------------------------------------------------------------------------------------------
def load_pose_image(image: Any, index: int = 0) -> Image.Image:
    """An RGB PIL image from a path, URL, PIL image or (H, W[, C]) array; errors name the image index."""
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if isinstance(image, str):
        if image.startswith(("http://", "https://")):
            image = load_image(image)
        else:
            if not os.path.isfile(image):
                raise FileNotFoundError(f"Image {index}: no such file {image!r}.")
            try:
                with Image.open(image) as opened:
                    opened.load()
                    image = opened.convert("RGB")
            except (UnidentifiedImageError, OSError) as error:
                raise ValueError(f"Image {index}: cannot read {image!r} as an image ({error}).") from error
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # channels first
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"Image {index}: expected an (H, W), (H, W, C) or (C, H, W) array, got shape {image.shape}.")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"Image {index} is empty: shape {image.shape}.")
        if array.dtype != np.uint8:
            scale = 255.0 if array.size and float(np.nanmax(array)) <= 1.0 else 1.0
            array = np.clip(array.astype(np.float64) * scale, 0, 255).round().astype(np.uint8)
        image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    if not isinstance(image, Image.Image):
        raise TypeError(
            f"Image {index}: expected a path, URL, PIL image or numpy array, got {type(image).__name__}."
        )
    if image.width == 0 or image.height == 0:
        raise ValueError(f"Image {index} is empty: size {image.width}x{image.height}.")
    return image.convert("RGB") if image.mode != "RGB" else image


def _is_single_image(images: Any) -> bool:
    return not isinstance(images, (list, tuple))


def split_boxes_per_image(boxes: Any, num_images: int, single: bool) -> list[np.ndarray | None]:
    """One (N, 4) or (N, 5) float array per image (None where not given); a single image may take its box list
    without the outer list. The pipeline's own check, not the processor's: it names the image in the whole call and
    accepts a score column."""
    if boxes is None:
        return [None] * num_images
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    if single and (len(boxes) == 0 or _is_box_list(boxes)):
        boxes = [boxes]  # the box list of the one image
    if len(boxes) != num_images:
        raise ValueError(f"boxes has {len(boxes)} box lists for {num_images} images; give one list per image.")
    out = []
    for index, image_boxes in enumerate(boxes):
        if image_boxes is None:
            out.append(None)
            continue
        if isinstance(image_boxes, torch.Tensor):
            image_boxes = image_boxes.detach().cpu().numpy()
        try:
            array = np.asarray(image_boxes, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Boxes of image {index} are not lists of 4 numbers: {error}") from error
        if array.size == 0:
            array = array.reshape(0, 4)
        if array.ndim == 1 and array.shape[0] in (4, 5):
            raise ValueError(f"Boxes of image {index} must be a list of boxes, got a single box {array.tolist()}.")
        if array.ndim != 2 or array.shape[1] not in (4, 5):
            raise ValueError(f"Boxes of image {index} must have shape (N, 4), or (N, 5) with scores, got {array.shape}.")
        if not np.isfinite(array).all():
            raise ValueError(f"Boxes of image {index} contain NaN or infinite values.")
        out.append(array)
    return out


def boxes_to_xyxy(boxes: np.ndarray, box_format: str) -> np.ndarray:
    """(N, 4) boxes as [x0, y0, x1, y1]."""
    if box_format == "xyxy":
        return boxes.astype(np.float64, copy=True)
    if box_format == "xywh":
        out = boxes.astype(np.float64, copy=True)
        out[:, 2:] += out[:, :2]
        return out
    raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}.")


# Detector ---------------------------------------------------------------------------------------------------------
def resolve_detector(detector: Any, device: torch.device | None = None) -> Any:
    """An object-detection pipeline from a model id or folder, a detection model, a (model, image processor) pair or
    a ready pipeline; checked to know the "person" class."""
    from transformers import AutoImageProcessor, PreTrainedModel, pipeline

    if isinstance(detector, Pipeline):
        detection = detector
    elif isinstance(detector, (str, os.PathLike)):
        detection = pipeline("object-detection", model=os.fspath(detector), device=device)
    elif isinstance(detector, tuple) and len(detector) == 2:
        detection = pipeline("object-detection", model=detector[0], image_processor=detector[1], device=device)
    elif isinstance(detector, PreTrainedModel):
        source = getattr(detector, "name_or_path", "") or ""
        try:
            processor = AutoImageProcessor.from_pretrained(source)
        except Exception as error:
            raise ValueError(
                f"Cannot find the image processor of detector {type(detector).__name__} (name_or_path={source!r}); "
                "pass detector=(model, image_processor) or a ready object-detection pipeline."
            ) from error
        detection = pipeline("object-detection", model=detector, image_processor=processor, device=device)
    elif callable(detector):
        return detector  # any callable(image, threshold=...) -> [{"label", "score", "box"}]
    else:
        raise TypeError(
            "detector must be a model id or folder, a detection model, a (model, image processor) pair or an "
            f"object-detection pipeline, got {type(detector).__name__}."
        )
    labels = getattr(getattr(detection, "model", None), "config", None)
    labels = [str(name).lower() for name in getattr(labels, "id2label", {}).values()]
    if labels and "person" not in labels:
        raise ValueError(f"The detector has no 'person' class; its classes are {labels[:20]}.")
    return detection


def detect_people(detector: Any, image: Image.Image, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """xyxy boxes (N, 4) and scores (N,) of the detector's "person" detections scoring at least `threshold`."""
    detections = detector(image, threshold=threshold)
    boxes, scores = [], []
    for detection in detections:
        if str(detection["label"]).lower() != "person" or detection["score"] < threshold:
            continue
        box = detection["box"]
        if box["xmax"] <= box["xmin"] or box["ymax"] <= box["ymin"]:
            continue  # a degenerate detection has nothing to crop
        boxes.append([box["xmin"], box["ymin"], box["xmax"], box["ymax"]])
        scores.append(float(detection["score"]))
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)


# Pipeline ---------------------------------------------------------------------------------------------------------
class KeypointDetectionPipeline(ChunkPipeline):
    """Top-down human pose estimation with a ViTPose model.

    Call arguments (also accepted at construction, as defaults):
        images: a path, URL, PIL image, numpy array, or a list of them.
        boxes: person boxes per image, in `box_format`; for one image its box list, for several a list of box lists.
            A fifth column, if present, is the box score (e.g. from an external detector).
        box_format: "xywh" (COCO) or "xyxy".
        detector: where no boxes are given, an object detector (model id, model, pipeline) whose "person" detections
            become the boxes. Without boxes and detector, the whole image is one box.
        detector_threshold: minimum detection score of a person.
        flip_test: also run the mirrored crops and average the heatmaps (the paper's evaluation setting).
        threshold: passed to `post_process_pose_estimation`.
        dataset: keypoint head (name or index) of a multi-dataset model; default the first.
        batch_size: crops per forward (twice that with `flip_test`); default 8.
        return_tensors: keypoints, scores and boxes as torch tensors instead of Python lists.

    Construction only:
        dtype: the precision the model runs in: a torch dtype or "fp32" / "bf16" / "fp16"; "auto" (transformers'
            default) keeps the model's own dtype. `vitpose_hf.inference_optimization.resolve_dtype("auto")` names the
            fastest one for the hardware (what the CLI's `--dtype auto` uses).
        optimize: run an inference-only copy of the model with oneDNN-prepacked linear layers on CPU (default True;
            the heatmaps equal the plain forward's to about 1e-6 in fp32). `pose.model` stays the plain model.

    Returns, per image, a list of people `{"keypoints": [[x, y], ...], "scores": [...], "labels": [names],
    "bbox": [x0, y0, x1, y1], "box_score": float}` (box_score is the detector's score, 1.0 for given boxes without a
    score column and for the whole-image box).
    """

    _load_processor = False
    _load_image_processor = None  # loaded with the model when available, else built from the model config
    _load_feature_extractor = False
    _load_tokenizer = False

    def __init__(self, *args, dtype: str | torch.dtype | None = "auto", optimize: bool = True, **kwargs):
        kwargs.setdefault("batch_size", DEFAULT_BATCH_SIZE)
        self._detectors: dict[Any, Any] = {}
        super().__init__(*args, **kwargs)
        self.model.eval()
        run_dtype = None if dtype in (None, "auto") else resolve_dtype(dtype, self.device)
        # What `_forward` runs; `self.model` stays the plain model (saved by `save_pretrained`, free to train).
        self.inference_model = self.model
        if optimize or run_dtype not in (None, self.model.dtype):
            self.inference_model = optimize_for_inference(self.model, run_dtype, pack=None if optimize else False)
        if self.image_processor is None:
            self.image_processor = VitPoseImageProcessor.from_model_config(self.model.config)
        elif not isinstance(self.image_processor, VitPoseImageProcessor):
            # e.g. transformers' built-in ViTPose processor, picked by class name from a checkpoint's config.
            accepted = inspect.signature(VitPoseImageProcessor.__init__).parameters
            settings = {k: v for k, v in self.image_processor.to_dict().items() if k in accepted and k != "self"}
            self.image_processor = VitPoseImageProcessor(**settings)

    # Parameters ---------------------------------------------------------------------------------------------------
    def _sanitize_parameters(
        self, boxes=None, box_format=None, detector=None, detector_threshold=None, flip_test=None, threshold=None,
        dataset=None, return_tensors=None, timeout=None,
    ):
        preprocess, forward, postprocess = {}, {}, {}
        if box_format is not None:
            if box_format not in BOX_FORMATS:
                raise ValueError(f"box_format must be one of {BOX_FORMATS}, got {box_format!r}.")
            preprocess["box_format"] = box_format
        if detector is not None:
            preprocess["detector"] = self._detector(detector)
        if detector_threshold is not None:
            preprocess["detector_threshold"] = float(detector_threshold)
        if timeout is not None:
            preprocess["timeout"] = timeout
        if flip_test is not None:
            forward["flip_test"] = bool(flip_test)
        if dataset is not None:
            self.model.config.dataset_index(dataset)  # fail early on an unknown head
            forward["dataset"] = dataset
            postprocess["dataset"] = dataset
        if threshold is not None:
            postprocess["threshold"] = threshold
        if return_tensors is not None:
            postprocess["return_tensors"] = bool(return_tensors)
        if boxes is not None:
            raise ValueError("boxes belong to one call, not to the pipeline: pass them with the images.")
        return preprocess, forward, postprocess

    def _detector(self, detector: Any) -> Any:
        key = detector if isinstance(detector, (str, os.PathLike)) else id(detector)
        if key not in self._detectors:
            self._detectors[key] = (detector, resolve_detector(detector, self.device))
        return self._detectors[key][1]

    def __call__(self, images: Any, boxes: Any = None, **kwargs) -> list:
        """Pose estimation on one image (returns its list of people) or on many (a list of such lists)."""
        if isinstance(images, (collections.abc.Iterator, torch.utils.data.Dataset)):
            if boxes is not None:
                raise ValueError("boxes cannot be zipped with a generator or dataset of images; yield dicts instead.")
            return super().__call__(self._requests_from_stream(images), **kwargs)
        single = _is_single_image(images)
        image_list = [images] if single else list(images)
        per_image_boxes = split_boxes_per_image(boxes, len(image_list), single)
        requests = [
            {"image": image, "boxes": image_boxes, "index": index}
            for index, (image, image_boxes) in enumerate(zip(image_list, per_image_boxes))
        ]
        if single:
            return super().__call__(requests[0], **kwargs)
        if not requests:
            return []
        return super().__call__(requests, **kwargs)

    @staticmethod
    def _requests_from_stream(images):
        for index, item in enumerate(images):
            if isinstance(item, dict) and "image" in item:
                boxes = split_boxes_per_image(item.get("boxes"), 1, True)[0]
                yield {"image": item["image"], "boxes": boxes, "index": index}
            else:
                yield {"image": item, "boxes": None, "index": index}

    # Steps --------------------------------------------------------------------------------------------------------
    def preprocess(
        self, request: dict, box_format: str = "xywh", detector: Any = None, detector_threshold: float = 0.5,
        timeout: float | None = None,
    ):
        index = request.get("index", 0)
        image = request["image"]
        if isinstance(image, str) and image.startswith(("http://", "https://")):
            image = load_image(image, timeout=timeout)
        image = load_pose_image(image, index)
        if request.get("boxes") is not None:
            given = request["boxes"]
            boxes = boxes_to_xyxy(given[:, :4], box_format)
            box_scores = given[:, 4] if given.shape[1] == 5 else np.ones(len(boxes))
            sides = boxes[:, 2:] - boxes[:, :2]
            for j in np.flatnonzero((sides <= 0).any(axis=1)):
                raise ValueError(f"Box {j} of image {index} has no area: {request['boxes'][j, :4].tolist()} ({box_format}).")
        elif detector is not None:
            boxes, box_scores = detect_people(detector, image, detector_threshold)
        else:
            boxes = np.array([[0.0, 0.0, image.width, image.height]])
            box_scores = np.ones(1)

        height, width = self.image_processor.size["height"], self.image_processor.size["width"]
        if len(boxes) == 0:
            # The chunk iterator needs one item per image: a placeholder crop the forward skips.
            yield {"pixel_values": torch.zeros(1, 3, height, width), "valid": torch.zeros(1, dtype=torch.bool),
                   "box": torch.zeros(1, 4, dtype=torch.float64), "box_score": torch.zeros(1, dtype=torch.float64),
                   "is_last": True}
            return
        inputs = self.image_processor(image, boxes=[boxes], box_format="xyxy", return_tensors="pt")
        pixel_values = inputs["pixel_values"]
        for i in range(len(boxes)):
            yield {
                "pixel_values": pixel_values[i : i + 1],
                "valid": torch.ones(1, dtype=torch.bool),
                "box": torch.from_numpy(boxes[i : i + 1]),
                "box_score": torch.tensor([box_scores[i]], dtype=torch.float64),
                "is_last": i == len(boxes) - 1,
            }

    def _forward(self, inputs: dict, flip_test: bool = True, dataset: int | str | None = None) -> dict:
        valid = inputs["valid"]
        pixel_values = inputs["pixel_values"]
        rows = valid.nonzero().flatten()
        heatmaps = flipped = None
        if rows.numel() > 0:
            crops = pixel_values if rows.numel() == len(valid) else pixel_values.index_select(0, rows)
            crops = crops.to(self.inference_model.dtype)
            if flip_test:
                crops = torch.cat([crops, flip_images(crops)])
            maps = self.inference_model(pixel_values=crops, dataset_index=dataset).heatmaps.float()
            found, flipped_found = (maps[: len(rows)], maps[len(rows) :]) if flip_test else (maps, None)
            heatmaps = found.new_zeros((len(valid),) + found.shape[1:]).index_copy(0, rows, found)
            if flipped_found is not None:
                flipped = found.new_zeros((len(valid),) + found.shape[1:]).index_copy(0, rows, flipped_found)
        else:
            heatmaps = pixel_values.new_zeros((len(valid), 0, 0, 0))
        return {
            "valid": valid, "heatmaps": heatmaps, "flipped_heatmaps": flipped, "box": inputs["box"],
            "box_score": inputs["box_score"], "is_last": inputs["is_last"],
        }

    def postprocess(
        self, model_outputs: list[dict], threshold: float | None = None, dataset: int | str | None = None,
        return_tensors: bool = False,
    ) -> list[dict]:
        outputs = [output for output in model_outputs if bool(output["valid"].reshape(-1)[0])]
        if not outputs:
            return []
        heatmaps = torch.cat([output["heatmaps"] for output in outputs])
        flipped = None
        if outputs[0]["flipped_heatmaps"] is not None:
            flipped = torch.cat([output["flipped_heatmaps"] for output in outputs])
        boxes = torch.cat([output["box"] for output in outputs]).numpy()
        box_scores = torch.cat([output["box_score"] for output in outputs]).tolist()
        layout = self.model.config.layout(dataset)
        people = self.image_processor.post_process_pose_estimation(
            ModelOutput(heatmaps=heatmaps),
            boxes=[boxes],
            box_format="xyxy",
            threshold=threshold,
            flipped_outputs=None if flipped is None else ModelOutput(heatmaps=flipped),
            dataset=layout.flip_index,  # plain ints: the Hub copy's layout class differs from the processor's
        )[0]
        results = []
        for person, box_score in zip(people, box_scores):
            labels = [layout.keypoints[int(k)] for k in person["labels"]]
            if return_tensors:
                results.append({"keypoints": person["keypoints"], "scores": person["scores"], "labels": labels,
                                "bbox": person["bbox"], "box_score": float(box_score)})
            else:
                results.append({"keypoints": person["keypoints"].tolist(), "scores": person["scores"].tolist(),
                                "labels": labels, "bbox": person["bbox"].tolist(), "box_score": float(box_score)})
        return results


def register_pipeline() -> None:
    """Register "keypoint-detection" with transformers, the embedded model as its default."""
    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is KeypointDetectionPipeline:
        return
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=KeypointDetectionPipeline, pt_model=AutoModel, default=_LazyDefault(), type="image"
    )
    # What pipe.save_pretrained writes into the config as `custom_pipelines`: no default (it names a local folder).
    impl = dict(PIPELINE_REGISTRY.supported_tasks[TASK])
    impl.pop("default", None)
    KeypointDetectionPipeline._registered_impl = {TASK: impl}


__all__ = [
    "KeypointDetectionPipeline", "default_model_path", "detect_people", "load_pose_image", "register_pipeline",
    "resolve_detector", "split_boxes_per_image",
]
