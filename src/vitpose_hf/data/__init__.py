"""Keypoint datasets: loading, augmentation, multi-dataset mixing and a synthetic pose generator.

    from vitpose_hf.data import TopDownAugmentation, load_keypoint_dataset
    train = load_keypoint_dataset("person_keypoints_train2017.json", "train2017/", layout="coco",
                                  transform=TopDownAugmentation("coco", seed=0))
    train[0]["pixel_values"], train[0]["labels"], train[0]["target_weight"]

Submodules are imported on first use, so `python -m vitpose_hf.data.synthetic` starts fast.
"""

from __future__ import annotations

from .._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, {
    "converters": ("AnnotationError", "aic_to_coco", "mpii_to_coco"),
    "coco": ("LoadReport", "SAMPLE_FEATURES", "as_batch_transform", "coco_to_samples", "load_keypoint_dataset",
        "load_keypoint_samples"),
    "transforms": ("AugmentationParams", "TopDownAugmentation", "default_upper_body_ids", "load_image",
        "sample_image"),
    "hf_datasets": ("DEFAULT_COLUMNS", "AugmentedStream", "coco_from_rows", "load_keypoint_hf_dataset",
        "load_keypoint_rows"),
    "mixing": ("MixedDataset", "MixingSampler", "collate_keypoints", "mixing_counts"),
    "synthetic": ("generate_synthetic_dataset",),
    "figures": ("SyntheticPerson", "keypoint_colors", "render_person", "render_scene", "sample_person"),
})
