"""What runs when the user names no model or no person detector: real ones when they can be had, else the embedded
model, saying so.

Real photos need a model trained on real people and a person detector. Both defaults come from the Hub and are used
when they are in the local Hugging Face cache or the Hub is reachable; otherwise the pose model falls back to the
model embedded in the package (trained on synthetic figures only) with a warning that says how to get the real one,
and the pipeline takes the whole image as one person. The pipeline and the command line share this one rule.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
import warnings
from pathlib import Path

from huggingface_hub import constants as hub_constants
from huggingface_hub import model_info, snapshot_download

DEFAULT_MODEL_ID = "usyd-community/vitpose-base-simple"  # transformers' built-in format, converted on load
DEFAULT_DETECTOR_ID = "PekingU/rtdetr_r50vd_coco_o365"  # RT-DETR, COCO classes ("person" among them)
EMBEDDED_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "embedded"
HUB_TIMEOUT_S = 5.0
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

HOW_TO_GET_REAL_MODELS = (
    "to use the real ViTPose-B and person detector, go online once or download them with "
    f"`hf download {DEFAULT_MODEL_ID}` and `hf download {DEFAULT_DETECTOR_ID}`, or pass model=... / --model "
    "(e.g. a converted official checkpoint)"
)

_UNTRAINED_DIR: str | None = None


def cached_snapshot(repo_id: str) -> str | None:
    """The local folder of `repo_id`'s main revision when its config and weights are in the Hub cache, else None."""
    try:
        folder = snapshot_download(repo_id, local_files_only=True)
    except (OSError, ValueError):  # not cached, a partial download, or not a repo id: not usable offline
        return None
    has_config = os.path.isfile(os.path.join(folder, "config.json"))
    has_weights = any(os.path.isfile(os.path.join(folder, name)) for name in WEIGHT_FILES)
    return folder if has_config and has_weights else None


def hub_reachable(repo_id: str) -> bool:
    """Whether the Hub answers for `repo_id` now (never asked in offline mode)."""
    if hub_constants.is_offline_mode():
        return False
    try:
        model_info(repo_id, timeout=HUB_TIMEOUT_S)
    except Exception:  # noqa: BLE001  (no network, Hub down, repo gone, a proxy's error: all mean "not now")
        return False
    return True


def available_from_hub(repo_id: str) -> str | None:
    """The cached folder of `repo_id`, or the id itself when it can be downloaded now, or None."""
    folder = cached_snapshot(repo_id)
    if folder is not None:
        return folder
    return repo_id if hub_reachable(repo_id) else None


def default_model_path() -> str:
    """The model used when none is given: the Hub's ViTPose-B when available, else the embedded one with a warning."""
    real = available_from_hub(DEFAULT_MODEL_ID)
    if real is not None:
        return real
    warnings.warn(
        f"{DEFAULT_MODEL_ID} is neither cached nor reachable: using the model embedded in vitpose_hf, which knows only "
        f"the synthetic figures it was trained on, so its keypoints on real photos are meaningless; "
        f"{HOW_TO_GET_REAL_MODELS}.",
        UserWarning,
        stacklevel=2,
    )
    return embedded_model_path()


def default_detector() -> str | None:
    """The person detector used when no boxes and no detector are given: RT-DETR when available, else None."""
    return available_from_hub(DEFAULT_DETECTOR_ID)


def embedded_model_path() -> str:
    """Folder of the model embedded in the package (`vitpose-hf demo` and the offline default).

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
    return _untrained_model()


def _untrained_model() -> str:
    global _UNTRAINED_DIR
    if _UNTRAINED_DIR is None or not os.path.isdir(_UNTRAINED_DIR):
        import torch

        from .configuration_vitpose import VitPoseConfig
        from .image_processing_vitpose import VitPoseImageProcessor
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
        _UNTRAINED_DIR = folder
    return _UNTRAINED_DIR


__all__ = [
    "DEFAULT_DETECTOR_ID", "DEFAULT_MODEL_ID", "EMBEDDED_MODEL_DIR", "available_from_hub", "cached_snapshot",
    "default_detector", "default_model_path", "embedded_model_path", "hub_reachable",
]
