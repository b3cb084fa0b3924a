"""Keypoint datasets: loading, augmentation, multi-dataset mixing and a synthetic pose generator.

Submodules are imported on first use, so `python -m vitpose_hf.data.synthetic` runs without importing the others.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "generate_synthetic_dataset": "synthetic",
    "keypoint_colors": "synthetic",
    "render_person": "synthetic",
    "render_scene": "synthetic",
    "sample_person": "synthetic",
    "SyntheticPerson": "synthetic",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
