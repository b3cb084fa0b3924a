"""The data of a run: the datasets of the recipe (generated when synthetic, or read with the `datasets` library), their
mixture, the loader, and the checks of the validation files, done before step 0 so that a bad file never surfaces at
the first evaluation.

Datasets of the `datasets` library (`hf_dataset:` sections) that are not streamed become `datasets.Dataset`s of samples
mixed by `MixingSampler` exactly as annotation files, so resuming is exact. Streamed ones are mixed by `AugmentedStream`
(the same mixing rule and augmentation seeds); an epoch is `samples_per_epoch` draws and a resumed epoch replays its
stream up to the step it stopped at (the same batches when the process and worker counts are unchanged).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import datasets
import torch
from torch.utils.data import DataLoader

from ..codec import HeadCodec
from ..configuration_vitpose import VitPoseConfig
from ..data.coco import as_batch_transform, load_keypoint_dataset, load_keypoint_samples
from ..data.hf_datasets import AugmentedStream, check_columns, load_keypoint_hf_dataset, load_keypoint_rows, resolve_columns
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


def hf_rows(section: DatasetSection, split: str) -> Any:
    """The raw rows of a split of the section's `hf_dataset` (the image column left encoded)."""
    hf = section.hf_dataset
    image_column = resolve_columns(hf.columns)["image"]
    return load_keypoint_rows(hf.path, split, hf.streaming, image_column, **hf.load_kwargs())


def check_hf_dataset(section: DatasetSection, where: str) -> None:
    """Open the train and validation splits of an `hf_dataset` section and check their columns (a stream reads its
    first row): a missing dataset, split or column is an error naming the key, before step 0."""
    hf = section.hf_dataset
    for split in (hf.train_split, hf.validation_split):
        if split is None:
            continue
        source = f"{where}.hf_dataset of dataset {section.name!r} ({hf.path}, split {split!r})"
        try:
            check_columns(hf_rows(section, split), hf.columns, source)
        except ValueError as error:
            if source in str(error):
                raise ConfigError(str(error)) from error
            raise ConfigError(f"{source} cannot be read: {error}") from error
        except (OSError, KeyError, TypeError) as error:
            raise ConfigError(f"{source} cannot be read: {error}") from error


def check_validation_files(config: RunSection) -> None:
    """Read every validation file the evaluations will read (annotations, detections, head boxes) and open every
    `hf_dataset` split: a file that does not parse or a missing column is an error naming the dataset key and the
    file, before any training step."""
    from ..evaluation import load_head_boxes
    from ..evaluation.detections import load_detection_boxes

    for i, section in enumerate(config.datasets):
        where = f"datasets[{i}]"
        if section.hf_dataset is not None:
            check_hf_dataset(section, where)
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


class DatasetTransforms:
    """The augmentation of each dataset, chosen by the sample's `dataset_index`: the one transform a stream mixing
    several datasets applies."""

    def __init__(self, transforms: list[TopDownAugmentation]) -> None:
        self.transforms = transforms

    def set_epoch(self, epoch: int) -> None:
        for transform in self.transforms:
            transform.set_epoch(epoch)

    def __call__(self, sample: dict) -> dict:
        return self.transforms[int(sample["dataset_index"])](sample)


@dataclass
class RunData:
    """The training data of a run and its length in optimizer steps. `sampler` is None for streamed datasets
    (`dataset` is then an `AugmentedStream`)."""

    dataset: MixedDataset | AugmentedStream
    sampler: MixingSampler | None
    transforms: list[TopDownAugmentation]
    loader: DataLoader
    steps_per_epoch: int
    max_steps: int
    num_epochs: int
    batches_per_epoch: int

    def sizes_text(self) -> str:
        return str(self.dataset.sizes) if isinstance(self.dataset, MixedDataset) else "streamed"

    def epoch_batches(self, epoch: int, skip_batches: int) -> Iterator[dict]:
        """The micro-batches of `epoch` from the `skip_batches`-th on: the sampler starts there, a stream is replayed
        up to there (every sample is read and augmented again). A stream that runs dry is an error."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            for transform in self.transforms:
                transform.set_epoch(epoch)
            self.sampler.start_index = skip_batches * self.loader.batch_size
            return iter(self.loader)
        self.dataset.set_epoch(epoch)
        return self._stream_batches(epoch, skip_batches)

    def _stream_batches(self, epoch: int, skip_batches: int) -> Iterator[dict]:
        batches = iter(self.loader)
        for index in range(self.batches_per_epoch):
            try:
                batch = next(batches)
            except StopIteration:
                raise ValueError(f"The streamed datasets ran out after {index} batches of epoch {epoch} on this "
                                 f"process, short of {self.batches_per_epoch}: lower samples_per_epoch.") from None
            if index >= skip_batches:
                yield batch


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
        dataset = training_dataset(section, index, transform)
        if not isinstance(dataset, datasets.IterableDataset) and len(dataset) == 0:
            raise ValueError(f"Dataset {section.name!r} ({section.source()}) has no usable person annotation.")
        parts.append(dataset)
        transforms.append(transform)
    probabilities = None if config.datasets[0].probability is None else [d.probability for d in config.datasets]
    loader_options: dict[str, Any] = {
        "batch_size": config.per_device_batch_size, "collate_fn": collate_keypoints, "num_workers": config.num_workers,
        "drop_last": True, "pin_memory": pin_memory, "persistent_workers": False}
    sampler: MixingSampler | None = None
    if not isinstance(parts[0], datasets.IterableDataset):
        mixed: MixedDataset | AugmentedStream = MixedDataset(parts)
        sampler = MixingSampler(mixed.sizes, probabilities, num_samples=config.samples_per_epoch, seed=config.seed,
                                rank=rank, world_size=world_size)
        loader = DataLoader(mixed, sampler=sampler, generator=torch.Generator().manual_seed(config.seed),
                            **loader_options)
        draws = len(sampler)
    else:
        buffer = max(section.hf_dataset.shuffle_buffer for section in config.datasets)
        mixed = AugmentedStream(parts, DatasetTransforms(transforms), probabilities, seed=config.seed,
                                shuffle_buffer=buffer, rank=rank, world_size=world_size)
        loader = DataLoader(mixed, **loader_options)
        draws = math.ceil(config.samples_per_epoch / world_size)
    steps_per_epoch = draws // config.per_device_batch_size // config.gradient_accumulation_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"An epoch of {draws} draws per process cannot fill one optimizer step of "
            f"{config.per_device_batch_size} x {config.gradient_accumulation_steps} samples; lower the batch size "
            "or raise samples_per_epoch."
        )
    max_steps = config.max_steps if config.max_steps is not None else config.num_epochs * steps_per_epoch
    return RunData(mixed, sampler, transforms, loader, steps_per_epoch, max_steps,
                   math.ceil(max_steps / steps_per_epoch), steps_per_epoch * config.gradient_accumulation_steps)


def training_dataset(section: DatasetSection, index: int, transform: TopDownAugmentation) -> Any:
    """The training samples of a section: an annotation file or a non-streamed `hf_dataset` as a `datasets.Dataset`
    augmented on the fly, a streamed one as the `IterableDataset` of samples that `AugmentedStream` augments."""
    if section.hf_dataset is None:
        return load_keypoint_dataset(
            section.annotation_file, section.image_root, dataset_layout(section), section.format,
            dataset_name=section.name, dataset_index=index, transform=transform,
        )
    hf = section.hf_dataset
    samples = load_keypoint_hf_dataset(hf.path, hf.train_split, hf.columns, hf.streaming, dataset_layout(section),
                                       section.name, index, **hf.load_kwargs())
    return samples if hf.streaming else samples.with_transform(as_batch_transform(transform))
