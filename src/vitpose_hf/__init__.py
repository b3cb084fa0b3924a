"""ViTPose for the Hugging Face ecosystem.

Importing the package registers the model type "vitpose_hf" with transformers' Auto classes (and, once available,
the image processor and the "keypoint-detection" pipeline). transformers' own "vitpose" model type is untouched.
"""

from transformers import AutoBackbone, AutoConfig, AutoModel, AutoModelForKeypointDetection, AutoModelForPoseEstimation

from .configuration_vitpose import VARIANTS, VitPoseConfig
from .conversion import export_to_transformers
from .keypoints import KEYPOINT_LAYOUTS, KeypointLayout, get_layout, register_layout
from .modeling_vitpose import VitPoseBackbone, VitPoseEstimatorOutput, VitPoseModel

__version__ = "0.1.0"


def _register() -> None:
    AutoConfig.register(VitPoseConfig.model_type, VitPoseConfig, exist_ok=True)
    for auto_class in (AutoModel, AutoModelForPoseEstimation, AutoModelForKeypointDetection):
        auto_class.register(VitPoseConfig, VitPoseModel, exist_ok=True)
    AutoBackbone.register(VitPoseConfig, VitPoseBackbone, exist_ok=True)
    # save_pretrained then writes `auto_map` and copies the code, so Hub copies load with trust_remote_code=True.
    VitPoseConfig.register_for_auto_class()
    VitPoseModel.register_for_auto_class("AutoModel")
    from .pipeline import register_pipeline

    register_pipeline()  # pipeline("keypoint-detection"), defaulting to the embedded model


_register()

__all__ = [
    "KEYPOINT_LAYOUTS", "KeypointLayout", "VARIANTS", "VitPoseBackbone", "VitPoseConfig", "VitPoseEstimatorOutput",
    "VitPoseModel", "export_to_transformers", "get_layout", "register_layout",
]
