"""Keypoint datasets: loading, augmentation, multi-dataset mixing and a synthetic pose generator.

    from vitpose_hf.data import TopDownAugmentation, load_keypoint_dataset
    train = load_keypoint_dataset("person_keypoints_train2017.json", "train2017/", layout="coco",
                                  transform=TopDownAugmentation("coco", seed=0))
    train[0]["pixel_values"], train[0]["labels"], train[0]["target_weight"]

Submodules are imported on first use, so `python -m vitpose_hf.data.synthetic` starts fast.
"""

from __future__ import annotations

from .._lazy import lazy_exports

_EXPORTS = {
    "AnnotationError": "converters",
    "aic_to_coco": "converters",
    "mpii_to_coco": "converters",
    "LoadReport": "coco",
    "SAMPLE_FEATURES": "coco",
    "as_batch_transform": "coco",
    "coco_to_samples": "coco",
    "load_keypoint_dataset": "coco",
    "load_keypoint_samples": "coco",
    "AugmentationParams": "transforms",
    "TopDownAugmentation": "transforms",
    "default_upper_body_ids": "transforms",
    "load_image": "transforms",
    "MixedDataset": "mixing",
    "MixingSampler": "mixing",
    "collate_keypoints": "mixing",
    "mixing_counts": "mixing",
    "SyntheticPerson": "synthetic",
    "generate_synthetic_dataset": "synthetic",
    "keypoint_colors": "synthetic",
    "render_person": "synthetic",
    "render_scene": "synthetic",
    "sample_person": "synthetic",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
