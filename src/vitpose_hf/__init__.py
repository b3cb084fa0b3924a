"""ViTPose for the Hugging Face ecosystem.

Importing the package registers the model type "vitpose_hf" with transformers' Auto classes, our image processor
with AutoImageProcessor, and the "keypoint-detection" pipeline; it also lets our model classes load transformers'
built-in "vitpose" checkpoints. transformers' own "vitpose" model type is untouched. Only the model bundle is
imported here: conversion, data, evaluation and training load when first used.
"""

from __future__ import annotations

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForKeypointDetection,
    AutoModelForPoseEstimation,
)
from transformers.utils import logging as hf_logging

from ._lazy import lazy_exports
from .configuration_vitpose import VARIANTS, VitPoseConfig
from .image_processing_vitpose import VitPoseImageProcessor
from .inference_optimization import optimize_for_inference
from .keypoints import KEYPOINT_LAYOUTS, KeypointLayout, get_layout, register_layout
from .modeling_vitpose import VitPoseBackbone, VitPoseEstimatorOutput, VitPoseModel, VitPosePreTrainedModel
from .pipeline import KeypointDetectionPipeline, register_pipeline

__version__ = "0.1.0"


def _load_builtin_vitpose(cls, path_or_id, strict: bool = True, **kwargs):
    """transformers' built-in "vitpose" checkpoint -> our class (the converter loads only when one is met)."""
    from .convert.transformers_format import load_transformers_vitpose

    return load_transformers_vitpose(cls, path_or_id, strict=strict, **kwargs)


def _register() -> None:
    AutoConfig.register(VitPoseConfig.model_type, VitPoseConfig, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForPoseEstimation, AutoModelForKeypointDetection):
        auto_class.register(VitPoseConfig, VitPoseModel, exist_ok=True)
    AutoBackbone.register(VitPoseConfig, VitPoseBackbone, exist_ok=True)
    VitPosePreTrainedModel.foreign_checkpoint_loaders["vitpose"] = _load_builtin_vitpose
    # One class serves both backends: it warps with torch and needs no torchvision. Our config class shares its name
    # with the built-in's, so registering looks up the built-in processor too, which warns without torchvision.
    # Built-in checkpoints keep loading transformers' processor: ours is found by its own class name
    # (VitPoseHfImageProcessor) or by our model type, never by the built-in's "VitPoseImageProcessor".
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        AutoImageProcessor.register(
            VitPoseConfig, image_processor_classes={"pil": VitPoseImageProcessor, "torchvision": VitPoseImageProcessor},
            exist_ok=True,
        )
    finally:
        hf_logging.set_verbosity(verbosity)
    # save_pretrained then writes `auto_map` and copies the code, so Hub copies load with trust_remote_code=True.
    VitPoseConfig.register_for_auto_class()
    VitPoseModel.register_for_auto_class("AutoModel")
    VitPoseImageProcessor.register_for_auto_class("AutoImageProcessor")
    register_pipeline()  # pipeline("keypoint-detection"), defaulting as vitpose_hf.defaults says


_register()

__getattr__, _, _ = lazy_exports(__name__, {"convert.transformers_format": ("export_to_transformers",)})

__all__ = [
    "KEYPOINT_LAYOUTS", "KeypointDetectionPipeline", "KeypointLayout", "VARIANTS", "VitPoseBackbone", "VitPoseConfig",
    "VitPoseEstimatorOutput", "VitPoseImageProcessor", "VitPoseModel", "export_to_transformers", "get_layout",
    "optimize_for_inference", "register_layout",
]
