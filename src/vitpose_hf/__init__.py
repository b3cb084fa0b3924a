"""ViTPose for the Hugging Face ecosystem.

Importing the package registers the model type "vitpose_hf" with transformers' Auto classes, our image processor
with AutoImageProcessor, and the "keypoint-detection" pipeline. transformers' own "vitpose" model type is untouched.
"""

from transformers import (
    AutoBackbone,
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    AutoModelForKeypointDetection,
    AutoModelForPoseEstimation,
)
from transformers.utils import logging as hf_logging

from .configuration_vitpose import VARIANTS, VitPoseConfig
from .conversion import export_to_transformers
from .image_processing_vitpose import VitPoseImageProcessor
from .inference_optimization import optimize_for_inference
from .keypoints import KEYPOINT_LAYOUTS, KeypointLayout, get_layout, register_layout
from .modeling_vitpose import VitPoseBackbone, VitPoseEstimatorOutput, VitPoseModel
from .pipeline import KeypointDetectionPipeline, register_pipeline

__version__ = "0.1.0"


def _register() -> None:
    AutoConfig.register(VitPoseConfig.model_type, VitPoseConfig, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForPoseEstimation, AutoModelForKeypointDetection):
        auto_class.register(VitPoseConfig, VitPoseModel, exist_ok=True)
    AutoBackbone.register(VitPoseConfig, VitPoseBackbone, exist_ok=True)
    # One class serves both backends: it warps with torch and needs no torchvision. Our config class shares its name
    # with the built-in's, so registering looks up the built-in processor too, which warns without torchvision.
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
    register_pipeline()  # pipeline("keypoint-detection"), defaulting to the embedded model


_register()

__all__ = [
    "KEYPOINT_LAYOUTS", "KeypointDetectionPipeline", "KeypointLayout", "VARIANTS", "VitPoseBackbone", "VitPoseConfig",
    "VitPoseEstimatorOutput", "VitPoseImageProcessor", "VitPoseModel", "export_to_transformers", "get_layout",
    "optimize_for_inference", "register_layout",
]
