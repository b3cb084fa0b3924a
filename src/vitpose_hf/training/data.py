"""The data of a run: the datasets of the recipe (generated when synthetic), their mixture, the loader, and the checks
of the validation files, done before step 0 so that a bad file never surfaces at the first evaluation."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..codec import HeadCodec
from ..configuration_vitpose import VitPoseConfig
from ..data.coco import load_keypoint_dataset, load_keypoint_samples
from ..data.mixing import MixedDataset, MixingSampler, collate_keypoints
from ..data.synthetic import generate_synthetic_dataset
from ..data.transforms import TopDownAugmentation
from ..keypoints import KeypointLayout, get_layout
from .config import ConfigError, DatasetSection, RunSection

logger = logging.getLogger(__name__)


def dataset_layout(section: DatasetSection) -> KeypointLayout:
    """The dataset's keypoint layout, named after the dataset: that name is its head's name."""
    layout = get_layout(section.layout).to_dict()
    layout["name"] = section.name
    return KeypointLayout.from_dict(layout)


def ensure_synthetic_data(section: DatasetSection) -> None:
    """Generate the synthetic training/validation sets a config asks for, where they are not on disk yet."""
    for annotation_file, image_root, spec in (
        (section.annotation_file, section.image_root, section.synthetic),
        (section.val_annotation_file, section.val_image_root, section.val_synthetic),
    ):
        if spec is None or annotation_file is None or Path(annotation_file).is_file():
            continue
        folder = Path(annotation_file).parent
        if Path(image_root).resolve() != (folder / "images").resolve() or Path(annotation_file).name != "annotations.json":
            raise ValueError(
                f"Dataset {section.name!r}: a synthetic dataset is written as DIR/annotations.json with DIR/images; "
                f"got annotation_file {annotation_file} and image_root {image_root}."
            )
        logger.info("Generating synthetic dataset %s (%d images, seed %d)", folder, spec.num_images, spec.seed)
        generate_synthetic_dataset(folder, spec.num_images, section.layout, spec.seed, tuple(spec.image_size),
                                   spec.max_people)


def check_validation_files(config: RunSection) -> None:
    """Read every validation file the evaluations will read (annotations, detections, head boxes): a file that does
    not parse is an error naming the dataset key and the file, before any training step."""
    from ..evaluation import load_head_boxes
    from ..evaluation.detections import load_detection_boxes

    for i, section in enumerate(config.datasets):
        where = f"datasets[{i}]"
        checks: list[tuple[str, str | None, Any]] = [
            ("val_annotation_file", section.val_annotation_file,
             partial(load_keypoint_samples, image_root=section.val_image_root, layout=dataset_layout(section))),
            ("val_detections", section.val_detections, load_detection_boxes),
            ("val_head_boxes", section.val_head_boxes, load_head_boxes),
        ]
        for key, path, read in checks:
            if not path:
                continue
            try:
                read(path)
            except (OSError, ValueError, KeyError, TypeError) as error:
                raise ConfigError(f"{where}.{key} of dataset {section.name!r} cannot be read ({path}): {error}") from error


@dataclass
class RunData:
    """The training data of a run and its length in optimizer steps."""

    dataset: MixedDataset
    sampler: MixingSampler
    transforms: list[TopDownAugmentation]
    loader: DataLoader
    steps_per_epoch: int
    max_steps: int
    num_epochs: int


def head_codec_of(model_config: VitPoseConfig, name: str) -> HeadCodec | None:
    """The encoding of the head named after a dataset; None (UDP) where the model has no such head (MAE crops)."""
    return model_config.head_codec(name) if name in model_config.head_names else None


def build_run_data(config: RunSection, model_config: VitPoseConfig, rank: int, world_size: int,
                   pin_memory: bool) -> RunData:
    """The mixed training set, its sampler (sharded by process), the per-dataset augmentations and the loader (with
    its own generator, so that creating iterators never touches the global RNG)."""
    height, width = model_config.image_size
    heatmap_h, heatmap_w = model_config.heatmap_size
    parts, transforms = [], []
    for index, section in enumerate(config.datasets):
        transform = TopDownAugmentation(
            dataset_layout(section), input_size=(height, width), heatmap_size=(heatmap_h, heatmap_w),
            codec=head_codec_of(model_config, section.name), seed=config.seed, **config.augmentation,
        )
        dataset = load_keypoint_dataset(
            section.annotation_file, section.image_root, dataset_layout(section), section.format,
            dataset_name=section.name, dataset_index=index, transform=transform,
        )
        if len(dataset) == 0:
            raise ValueError(f"Dataset {section.name!r} ({section.annotation_file}) has no usable person annotation.")
        parts.append(dataset)
        transforms.append(transform)
    mixed = MixedDataset(parts)
    probabilities = None if config.datasets[0].probability is None else [d.probability for d in config.datasets]
    sampler = MixingSampler(mixed.sizes, probabilities, num_samples=config.samples_per_epoch, seed=config.seed,
                            rank=rank, world_size=world_size)
    loader = DataLoader(
        mixed, batch_size=config.per_device_batch_size, sampler=sampler, collate_fn=collate_keypoints,
        num_workers=config.num_workers, drop_last=True, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(config.seed), persistent_workers=False,
    )
    steps_per_epoch = len(sampler) // config.per_device_batch_size // config.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"An epoch of {len(sampler)} draws per process cannot fill one optimizer step of "
            f"{config.per_device_batch_size} x {config.gradient_accumulation_steps} samples; lower the batch size "
            "or raise samples_per_epoch."
        )
    max_steps = config.max_steps if config.max_steps is not None else config.num_epochs * steps_per_epoch
    return RunData(mixed, sampler, transforms, loader, steps_per_epoch, max_steps,
                   math.ceil(max_steps / steps_per_epoch))
