"""The "keypoint-detection" pipeline: from images to every person's keypoints in one call.

    import vitpose_hf
    from transformers import pipeline

    pose = pipeline("keypoint-detection")                       # ViTPose-B from the Hub, else the embedded model
    people = pose("street.jpg", detector="facebook/detr-resnet-50")
    people = pose(image, boxes=[[x, y, w, h], ...])             # or known boxes; neither: the default detector

Top-down pose estimation: each person box becomes one crop, the crops of all images are batched through the model
(`batch_size` crops per forward, twice that with the flip test) and every crop's heatmaps are decoded back into image
coordinates by the image processor. Built on transformers' `ChunkPipeline`: one chunk per crop, so batching, datasets
and generators behave as in every other pipeline.

Sharing: `pose.save_pretrained(folder)` (or `pose.push_to_hub(repo)`) writes the model, the image processor, this
code and a `custom_pipelines` entry in the config. Anyone then loads it with
`pipeline("keypoint-detection", model=repo, trust_remote_code=True)` without vitpose_hf; with vitpose_hf installed,
`pipeline("keypoint-detection", model=repo)` uses the installed code, no trust_remote_code needed. This module only
imports sibling modules of the package (relative, flat) so that the copied files work on their own.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
import warnings
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import AutoModel
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.pipelines.base import ChunkPipeline, Pipeline
from transformers.utils import ModelOutput

from .boxes import boxes_per_image, boxes_to_xyxy, check_box_format
from .codec import flip_images
from .defaults import DEFAULT_DETECTOR_ID, default_detector, default_model_path
from .image_processing_vitpose import VitPoseImageProcessor
from .images import load_image
from .inference_optimization import optimize_for_inference, resolve_dtype

TASK = "keypoint-detection"
DEFAULT_BATCH_SIZE = 8
_UNRESOLVED = object()


# Default model ----------------------------------------------------------------------------------------------------
class _LazyDefault(dict):
    """The registry's `{"model": (path, revision)}`, looked up only when `pipeline()` actually needs a default."""

    def __init__(self) -> None:
        super().__init__(model=None)

    def __getitem__(self, key: str) -> Any:
        if key == "model":
            return default_model_path(), None
        return super().__getitem__(key)


# Detector ---------------------------------------------------------------------------------------------------------
def resolve_detector(detector: Any, device: torch.device | None = None) -> Any:
    """An object-detection pipeline from a model id or folder, a detection model, a (model, image processor) pair or
    a ready pipeline; checked to know the "person" class."""
    from transformers import AutoImageProcessor, PreTrainedModel, pipeline

    if isinstance(detector, Pipeline):
        detection = detector
    elif isinstance(detector, (str, os.PathLike)):
        from .modeling_vitpose import check_local_checkpoint

        check_local_checkpoint(detector)  # a missing folder named as such, not as a bad Hub repo id
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


def _checked_detection(detection: Any, what: str) -> tuple[str, float, list[float]]:
    """(label, score, xyxy box) of one detector result, or a ValueError naming it: a custom detector may return
    anything, and a KeyError deep in the pipeline would not say which detection was wrong."""
    if not isinstance(detection, dict) or not {"label", "score", "box"} <= set(detection):
        raise ValueError(f"{what} must be a dict with 'label', 'score' and 'box', got {detection!r}.")
    box, score = detection["box"], detection["score"]
    corners = ("xmin", "ymin", "xmax", "ymax")
    if not isinstance(box, dict) or not set(corners) <= set(box):
        raise ValueError(f"{what}: 'box' must be a dict with {', '.join(corners)}, got {box!r}.")
    values = [box[key] for key in corners]
    numbers_only = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in [score, *values])
    if not numbers_only or not np.isfinite(np.asarray([score, *values], dtype=np.float64)).all():
        raise ValueError(f"{what}: score and box must be finite numbers, got score {score!r}, box {box!r}.")
    return str(detection["label"]), float(score), [float(v) for v in values]


def detect_people(
    detector: Any, image: Image.Image, threshold: float, index: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """xyxy boxes (N, 4) and scores (N,) of the detector's "person" detections scoring at least `threshold`."""
    detections = detector(image, threshold=threshold)
    if not isinstance(detections, (list, tuple)):
        raise ValueError(f"The detector returned {type(detections).__name__} for image {index}, not a list of detections.")
    boxes, scores = [], []
    for j, detection in enumerate(detections):
        label, score, box = _checked_detection(detection, f"Detection {j} of image {index}")
        if label.lower() != "person" or score < threshold:
            continue
        if box[2] <= box[0] or box[3] <= box[1]:
            continue  # a degenerate detection has nothing to crop
        boxes.append(box)
        scores.append(score)
    return np.asarray(boxes, dtype=np.float64).reshape(-1, 4), np.asarray(scores, dtype=np.float64)


# Arguments --------------------------------------------------------------------------------------------------------
def _flag(name: str, value: Any) -> bool:
    """A True/False argument: `bool("False")` is True, so strings and numbers are refused by name."""
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r} ({type(value).__name__}).")
    return bool(value)


def _number(name: str, value: Any, low: float | None = None, high: float | None = None) -> float:
    """A finite number argument, within [low, high] where given; anything else is an error naming it."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not np.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r} ({type(value).__name__}).")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{name} must be in [{low}, {high if high is not None else 'inf'}], got {value}.")
    return float(value)


def _as_vitpose_hf_model(model: Any) -> Any:
    """Our model for transformers' built-in "vitpose" checkpoints, which `pipeline()` loads as the stock class (whose
    config has no image_size); reloaded through `VitPoseModel.from_pretrained`, which converts them."""
    from .modeling_vitpose import VitPoseModel, VitPosePreTrainedModel

    if isinstance(model, VitPosePreTrainedModel) or getattr(getattr(model, "config", None), "model_type", None) != "vitpose":
        return model  # ours (installed or remote-code copy), or a path for transformers to resolve
    source = getattr(model, "name_or_path", "")
    if "vitpose" not in VitPoseModel.foreign_checkpoint_loaders or not source:
        raise TypeError(
            f"{type(model).__name__} is transformers' built-in ViTPose: `import vitpose_hf` and pass its folder or "
            "repo id (or vitpose_hf.VitPoseModel.from_pretrained(...)) so that it is converted."
        )
    return VitPoseModel.from_pretrained(source).to(device=model.device, dtype=model.dtype)


def _processor_for(model: Any) -> VitPoseImageProcessor:
    """The processor saved beside the model, loaded so that an invalid file is an error naming it and the key
    (transformers' pipeline() would quietly drop it), else one matching the model config."""
    folder = getattr(model, "name_or_path", "") or ""
    if os.path.isfile(os.path.join(folder, "preprocessor_config.json")):
        return VitPoseImageProcessor.from_pretrained(folder)
    return VitPoseImageProcessor.from_model_config(model.config)


# Pipeline ---------------------------------------------------------------------------------------------------------
class KeypointDetectionPipeline(ChunkPipeline):
    """Top-down human pose estimation with a ViTPose model.

    Call arguments (also accepted at construction, as defaults):
        images: a path, URL, PIL image, numpy array, or a list of them.
        boxes: person boxes per image, in `box_format`; for one image its box list, for several a list of box lists.
            A fifth column, if present, is the box score (e.g. from an external detector).
        box_format: "xywh" (COCO) or "xyxy".
        detector: where no boxes are given, an object detector (model id, model, pipeline) whose "person" detections
            become the boxes. Without one, the default person detector when it is cached or reachable (see
            `defaults.py`); failing that, the whole image is one box, with a warning.
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
    _load_video_processor = False  # else transformers derives a remote "VideoProcessor" from auto_map and prompts

    def __init__(self, *args, dtype: str | torch.dtype | None = "auto", optimize: bool = True, **kwargs):
        kwargs.setdefault("batch_size", DEFAULT_BATCH_SIZE)
        self._detectors: dict[Any, Any] = {}
        if "model" in kwargs:
            kwargs["model"] = _as_vitpose_hf_model(kwargs["model"])
        elif args:
            args = (_as_vitpose_hf_model(args[0]), *args[1:])
        self._default_detector: Any = _UNRESOLVED  # looked up once, when first needed
        self._warned_whole_image = False
        super().__init__(*args, **kwargs)
        self.model.eval()
        run_dtype = None if dtype in (None, "auto") else resolve_dtype(dtype, self.device)
        # What `_forward` runs; `self.model` stays the plain model (saved by `save_pretrained`, free to train).
        self.inference_model = self.model
        if optimize or run_dtype not in (None, self.model.dtype):
            self.inference_model = optimize_for_inference(self.model, run_dtype, pack=None if optimize else False)
        if self.image_processor is None:
            self.image_processor = _processor_for(self.model)
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
            check_box_format(box_format)
            preprocess["box_format"] = box_format
        if detector is not None:
            preprocess["detector"] = self._detector(detector)
        if detector_threshold is not None:
            preprocess["detector_threshold"] = _number("detector_threshold", detector_threshold, 0.0, 1.0)
        if timeout is not None:
            preprocess["timeout"] = _number("timeout", timeout, 0.0)
        if flip_test is not None:
            forward["flip_test"] = _flag("flip_test", flip_test)
        if dataset is not None:
            self.model.config.dataset_index(dataset)  # fail early on an unknown head
            preprocess["dataset"] = dataset
            forward["dataset"] = dataset
            postprocess["dataset"] = dataset
        if threshold is not None:
            postprocess["threshold"] = _number("threshold", threshold)
        if return_tensors is not None:
            postprocess["return_tensors"] = _flag("return_tensors", return_tensors)
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
        self._warned_whole_image = False  # the whole-image fallback warns once per call
        if isinstance(images, (collections.abc.Iterator, torch.utils.data.Dataset)):
            if boxes is not None:
                raise ValueError("boxes cannot be zipped with a generator or dataset of images; yield dicts instead.")
            return super().__call__(self._requests_from_stream(images, kwargs.get("box_format", "xywh")), **kwargs)
        single = not isinstance(images, (list, tuple))
        image_list = [images] if single else list(images)
        box_format = kwargs.get("box_format", "xywh")
        per_image_boxes = boxes_per_image(boxes, len(image_list), single, box_format, with_scores=True, optional=True)
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
    def _requests_from_stream(images, box_format: str = "xywh"):
        for index, item in enumerate(images):
            if isinstance(item, dict) and "image" in item:
                boxes = boxes_per_image(item.get("boxes"), 1, True, box_format, with_scores=True, optional=True)[0]
                yield {"image": item["image"], "boxes": boxes, "index": index}
            else:
                yield {"image": item, "boxes": None, "index": index}

    # Steps --------------------------------------------------------------------------------------------------------
    def preprocess(
        self, request: dict, box_format: str = "xywh", detector: Any = None, detector_threshold: float = 0.5,
        timeout: float | None = None, dataset: int | str | None = None,
    ):
        index = request.get("index", 0)
        image = load_image(request["image"], index, timeout=timeout)
        if request.get("boxes") is not None:
            given = request["boxes"]
            boxes = boxes_to_xyxy(given[:, :4], box_format)
            box_scores = given[:, 4] if given.shape[1] == 5 else np.ones(len(boxes))
        else:
            detector = detector if detector is not None else self._default_person_detector()
            if detector is not None:
                boxes, box_scores = detect_people(detector, image, detector_threshold, index)
            else:
                self._warn_whole_image()
                boxes = np.array([[0.0, 0.0, image.width, image.height]])
                box_scores = np.ones(1)

        height, width = self.image_processor.size["height"], self.image_processor.size["width"]
        if len(boxes) == 0:
            # The chunk iterator needs one item per image: a placeholder crop the forward skips.
            yield {"pixel_values": torch.zeros(1, 3, height, width), "valid": torch.zeros(1, dtype=torch.bool),
                   "box": torch.zeros(1, 4, dtype=torch.float64), "box_score": torch.zeros(1, dtype=torch.float64),
                   "is_last": True}
            return
        inputs = self.image_processor(image, boxes=[boxes], box_format="xyxy", return_tensors="pt",
                                      codec=self._head_codec(dataset))
        pixel_values = inputs["pixel_values"]
        for i in range(len(boxes)):
            yield {
                "pixel_values": pixel_values[i : i + 1],
                "valid": torch.ones(1, dtype=torch.bool),
                "box": torch.from_numpy(boxes[i : i + 1]),
                "box_score": torch.tensor([box_scores[i]], dtype=torch.float64),
                "is_last": i == len(boxes) - 1,
            }

    def _head_codec(self, dataset: int | str | None) -> dict:
        """The head's crop and decoding settings from the model config, as a plain dict (the Hub copy's class
        differs from the processor's)."""
        return self.model.config.head_codec(dataset).to_dict()

    def _default_person_detector(self) -> Any:
        """The default person detector (resolved once per pipeline), or None when it is neither cached nor reachable."""
        if self._default_detector is _UNRESOLVED:
            source = default_detector()
            self._default_detector = None if source is None else self._detector(source)
        return self._default_detector

    def _warn_whole_image(self) -> None:
        if not self._warned_whole_image:
            self._warned_whole_image = True
            warnings.warn(
                "no boxes and no detector: treating the whole image as one person (give boxes or a detector, or get "
                f"the default person detector once: `hf download {DEFAULT_DETECTOR_ID}`).",
                UserWarning,
                stacklevel=2,
            )

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
            codec=self._head_codec(dataset),
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
    """Register "keypoint-detection" with transformers, defaulting as `defaults.py` says."""
    from .modeling_vitpose import VitPoseModel

    if PIPELINE_REGISTRY.supported_tasks.get(TASK, {}).get("impl") is KeypointDetectionPipeline:
        return
    # VitPoseModel first: it also loads transformers' built-in "vitpose" checkpoints (the Hub default among them),
    # which AutoModel would load as transformers' own class.
    PIPELINE_REGISTRY.register_pipeline(
        TASK, pipeline_class=KeypointDetectionPipeline, pt_model=(VitPoseModel, AutoModel), default=_LazyDefault(),
        type="image",
    )
    # What pipe.save_pretrained writes into the config as `custom_pipelines`: no default (it names a local folder),
    # and only AutoModel, the class a copy without the package can name.
    impl = dict(PIPELINE_REGISTRY.supported_tasks[TASK])
    impl.pop("default", None)
    impl["pt"] = (AutoModel,)
    KeypointDetectionPipeline._registered_impl = {TASK: impl}


__all__ = [
    "KeypointDetectionPipeline", "default_model_path", "detect_people", "register_pipeline",
    "resolve_detector",
]
