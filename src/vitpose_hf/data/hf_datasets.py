"""Keypoint datasets from the `datasets` library: Hub datasets, parquet or arrow shards, streamed when they do not
fit on disk.

One row per person annotation, with the whole picture in the row. Column mapping (`DEFAULT_COLUMNS`; pass
`columns={"bbox": "person_box", ...}` for other names):

    image          the picture: a `datasets.Image` column (or encoded bytes)            required
    image_id       int                                                                  required
    annotation_id  int, unique in the dataset (column "id")                             required
    bbox           [x, y, w, h] in pixels                                               required
    keypoints      flat [x, y, v] * K (or K x [x, y, v]), COCO visibility 0/1/2          required
    area           the person's area (COCO: segmentation area); default w * h           optional
    iscrowd        0/1; default 0                                                       optional
    num_keypoints  labelled joints; default: those with v > 0                           optional
    category_id    default 1 (person)                                                   optional
    file_name      kept as `image_path`; default the image's own path or its id         optional
    width, height  default: read from the image header                                 optional

The rows become COCO annotations and go through `coco_to_samples`, the very rules of annotation files (crowd
annotations, those without keypoints and empty boxes are skipped; boxes are clipped to the image), so a parquet
export of a COCO file gives the same samples and, through `evaluate_keypoint_dataset(rows=...)`, the same metrics.
Samples are in the schema of `vitpose_hf.data.coco.SAMPLE_FEATURES` plus `image` (`{"bytes", "path"}`, decoded only
where a crop is cut: `TopDownAugmentation` and evaluation read it through `transforms.sample_image`). Their
`sample_index` is the annotation id: a key for the per-sample augmentation seed that does not depend on how a stream
is sharded between processes and workers.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets
import datasets.distributed
import numpy as np
import torch
from PIL import Image

from ..keypoints import KeypointLayout, get_layout
from .coco import SAMPLE_FEATURES, coco_to_samples
from .mixing import mixing_counts

DEFAULT_COLUMNS: dict[str, str] = {
    "image": "image", "image_id": "image_id", "annotation_id": "id", "bbox": "bbox", "keypoints": "keypoints",
    "area": "area", "iscrowd": "iscrowd", "num_keypoints": "num_keypoints", "category_id": "category_id",
    "file_name": "file_name", "width": "width", "height": "height",
}
REQUIRED_FIELDS = ("image", "image_id", "annotation_id", "bbox", "keypoints")
HF_SAMPLE_FEATURES = datasets.Features({**SAMPLE_FEATURES, "image": datasets.Image(decode=False)})
_SHARD_BUILDERS = {".parquet": "parquet", ".arrow": "arrow"}


def resolve_columns(columns: Mapping[str, str] | None) -> dict[str, str]:
    """The column mapping: `DEFAULT_COLUMNS` updated with `columns`; an unknown field is an error naming it."""
    columns = dict(columns or {})
    unknown = sorted(set(columns) - set(DEFAULT_COLUMNS))
    if unknown:
        raise ValueError(f"Unknown keypoint field(s) {unknown} in columns; known: {sorted(DEFAULT_COLUMNS)}.")
    return {**DEFAULT_COLUMNS, **columns}


def _local_shards(path_or_name: str) -> tuple[str, list[str]] | None:
    """(builder, files) when `path_or_name` is a parquet/arrow file, a glob of them or a folder holding them."""
    path = Path(path_or_name)
    for suffix, builder in _SHARD_BUILDERS.items():
        if path.is_dir():
            files = sorted(str(p) for p in path.glob(f"*{suffix}"))
        else:
            files = sorted(str(p) for p in path.parent.glob(path.name)) if path.name.endswith(suffix) else []
        if files:
            return builder, files
    return None


def load_keypoint_rows(
    path_or_name: str | Path, split: str = "train", streaming: bool = False, image_column: str = "image",
    **load_kwargs: Any,
) -> datasets.Dataset | datasets.IterableDataset:
    """The raw rows of a keypoint dataset: a Hub dataset name, a local dataset folder, or parquet/arrow shards (a
    file, a glob such as `shards/*.parquet`, or a folder of them). The image column stays undecoded (bytes), so
    that a person's row does not decode its picture until a crop is cut."""
    shards = _local_shards(str(path_or_name))
    if shards is not None:
        builder, files = shards
        rows = datasets.load_dataset(builder, data_files={split: files}, split=split, streaming=streaming,
                                     **load_kwargs)
    else:
        rows = datasets.load_dataset(str(path_or_name), split=split, streaming=streaming, **load_kwargs)
    features = rows.features
    if features is not None and isinstance(features.get(image_column), datasets.Image):
        rows = rows.cast_column(image_column, datasets.Image(decode=False))
    return rows


def column_names(rows: datasets.Dataset | datasets.IterableDataset) -> list[str]:
    """The columns of rows; a stream without declared features is asked for its first row."""
    if rows.column_names is not None:
        return list(rows.column_names)
    first = next(iter(rows), None)
    return list(first) if first is not None else []


def check_columns(rows: datasets.Dataset | datasets.IterableDataset, columns: Mapping[str, str] | None = None,
                  source: str = "<rows>") -> None:
    """Every required field has its column: a missing one is an error naming the column and the field."""
    names = resolve_columns(columns)
    present = set(column_names(rows))
    missing = [f"{names[field]} ({field})" for field in REQUIRED_FIELDS if names[field] not in present]
    if missing:
        raise ValueError(f"{source} has no column {', '.join(missing)}; its columns: {sorted(present)}. Map other "
                         "names with columns={field: column}.")


def _image_size(image: Any, what: str) -> tuple[int, int]:
    """(width, height) of an image value, reading only the header of encoded bytes."""
    if isinstance(image, Image.Image):
        return image.size
    if isinstance(image, Mapping):
        image = image.get("bytes") if image.get("bytes") is not None else image.get("path")
    try:
        source = io.BytesIO(bytes(image)) if isinstance(image, (bytes, bytearray, memoryview)) else image
        with Image.open(source) as opened:
            return opened.size
    except Exception as error:  # PIL raises several types for unreadable data
        raise ValueError(f"{what}: cannot read the image ({type(error).__name__}: {error}).") from error


def _file_name(image: Any, image_id: int) -> str:
    if isinstance(image, Mapping) and image.get("path"):
        return str(image["path"])
    return str(getattr(image, "filename", "") or image_id)


def coco_from_rows(
    rows: Iterable[Mapping[str, Any]], columns: Mapping[str, str] | None = None, source: str = "<rows>",
) -> tuple[dict, dict[int, Any]]:
    """Rows (one per person annotation, see the module docstring) -> a COCO keypoint dict and the images by id.

    Every row becomes an annotation, skipped ones included, so the dict is the ground truth a COCO file would be.
    """
    names = resolve_columns(columns)
    images: dict[int, Any] = {}
    image_infos: dict[int, dict] = {}
    annotations = []
    for position, row in enumerate(rows):
        missing = [names[field] for field in REQUIRED_FIELDS if row.get(names[field]) is None]
        if missing:
            raise ValueError(f"Row {position} of {source} has no value in column(s) {missing} (columns: "
                             f"{sorted(row)}); map other names with columns={{field: column}}.")
        try:
            image_id = int(row[names["image_id"]])
            annotation_id = int(row[names["annotation_id"]])
            bbox = [float(v) for v in row[names["bbox"]]]
            keypoints = np.asarray(row[names["keypoints"]], dtype=np.float64).reshape(-1).tolist()
        except (TypeError, ValueError) as error:
            raise ValueError(f"Row {position} of {source}: image_id, annotation id, bbox and keypoints must be "
                             f"numbers ({error}).") from error
        if len(bbox) != 4:
            raise ValueError(f"Row {position} of {source} (annotation id {annotation_id}): bbox must be [x, y, w, h], "
                             f"got {bbox}.")
        if image_id not in image_infos:
            image = row[names["image"]]
            width, height = row.get(names["width"]), row.get(names["height"])
            if width is None or height is None:
                width, height = _image_size(image, f"Row {position} of {source} (image id {image_id})")
            file_name = row.get(names["file_name"]) or _file_name(image, image_id)
            image_infos[image_id] = {"id": image_id, "file_name": str(file_name), "width": int(width),
                                     "height": int(height)}
            images[image_id] = image
        annotation = {"id": annotation_id, "image_id": image_id, "bbox": bbox, "keypoints": keypoints,
                      "category_id": int(row.get(names["category_id"]) or 1),
                      "iscrowd": int(row.get(names["iscrowd"]) or 0)}
        for field in ("area", "num_keypoints"):
            if row.get(names[field]) is not None:
                annotation[field] = row[names[field]]
        annotations.append(annotation)
    return {"images": list(image_infos.values()), "annotations": annotations, "categories": []}, images


def rows_to_samples(
    rows: Iterable[Mapping[str, Any]], layout: str | KeypointLayout = "coco", columns: Mapping[str, str] | None = None,
    dataset_name: str | None = None, dataset_index: int = 0, source: str = "<rows>",
) -> list[dict]:
    """Rows -> samples (the `SAMPLE_FEATURES` schema plus `image`), by the rules of annotation files."""
    coco, images = coco_from_rows(rows, columns, source)
    samples, _ = coco_to_samples(coco, "", layout, dataset_name, dataset_index, on_error="raise",
                                 check_images=False, source=source)
    for sample in samples:
        sample["image"] = images[sample["image_id"]]
        sample["sample_index"] = sample["annotation_id"]
    return samples


def _convert_batch(batch: dict[str, list], **options: Any) -> dict[str, list]:
    rows = [dict(zip(batch, values)) for values in zip(*batch.values())]
    samples = rows_to_samples(rows, **options)
    return {key: [sample[key] for sample in samples] for key in HF_SAMPLE_FEATURES}


def load_keypoint_hf_dataset(
    path_or_name: str | Path,
    split: str = "train",
    columns: Mapping[str, str] | None = None,
    streaming: bool = False,
    layout: str | KeypointLayout = "coco",
    dataset_name: str | None = None,
    dataset_index: int = 0,
    batch_size: int = 256,
    **load_kwargs: Any,
) -> datasets.Dataset | datasets.IterableDataset:
    """A keypoint dataset of the `datasets` library as samples, one per usable person.

    `path_or_name` and `load_kwargs` as for `load_keypoint_rows`; `columns` maps the fields of the module docstring
    to the dataset's columns. Without streaming the result is a `datasets.Dataset` (use it as the file-based one:
    `with_transform(as_batch_transform(TopDownAugmentation(...)))`, `MixedDataset`, `MixingSampler`); with
    `streaming=True` an `IterableDataset` converted on the fly: train from it with `AugmentedStream`.
    """
    layout = get_layout(layout)
    image_column = resolve_columns(columns)["image"]  # an unknown field fails before anything is loaded
    rows = load_keypoint_rows(path_or_name, split, streaming, image_column, **load_kwargs)
    convert = functools.partial(_convert_batch, layout=layout, columns=columns, dataset_name=dataset_name,
                                dataset_index=dataset_index, source=str(path_or_name))
    return rows.map(convert, batched=True, batch_size=batch_size, remove_columns=column_names(rows),
                    features=HF_SAMPLE_FEATURES)


class AugmentedStream(torch.utils.data.IterableDataset):
    """Augmented training samples from streamed keypoint datasets, for a plain `DataLoader`.

    What one epoch yields is a function of `(seed, epoch)` only: the rows are shuffled with a buffer seeded by both,
    datasets are mixed `mixing_counts(probabilities, chunk)` times per chunk of draws in a seeded order (the rule of
    `MixingSampler`), and every augmentation is seeded by `(seed, epoch, dataset_index, annotation id)`. The stream is
    split between processes (`rank`, `world_size`, e.g. `accelerator.process_index` / `num_processes`) and between
    the DataLoader's workers with `datasets.distributed.split_dataset_by_node` (whole shards when their number
    divides, else every n-th row), so no sample is seen twice in an epoch. An epoch ends when one dataset runs out.

    Args:
        streams: `load_keypoint_hf_dataset(..., streaming=True)` results, one per dataset (each with its
            `dataset_index`).
        transform: a `TopDownAugmentation` (or any callable taking a sample and having `set_epoch`).
        probabilities: share of each dataset in the draws; default equal shares.
        shuffle_buffer: rows held for shuffling (0: keep the stored order).
        chunk: draws over which the mixing proportions are exact.
    """

    def __init__(
        self,
        streams: datasets.IterableDataset | Sequence[datasets.IterableDataset],
        transform: Any,
        probabilities: Sequence[float] | None = None,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        rank: int = 0,
        world_size: int = 1,
        chunk: int = 1000,
    ) -> None:
        self.streams = [streams] if isinstance(streams, datasets.IterableDataset) else list(streams)
        if not self.streams:
            raise ValueError("AugmentedStream needs at least one stream.")
        probabilities = [1.0] * len(self.streams) if probabilities is None else [float(p) for p in probabilities]
        if len(probabilities) != len(self.streams) or min(probabilities) < 0 or sum(probabilities) <= 0:
            raise ValueError(f"probabilities must be one non-negative share per stream ({len(self.streams)}) with a "
                             f"positive sum, got {probabilities}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size), got rank {rank}, world_size {world_size}.")
        self.probabilities = probabilities
        self.transform = transform
        self.seed, self.epoch = int(seed), 0
        self.shuffle_buffer, self.chunk = int(shuffle_buffer), int(chunk)
        self.rank, self.world_size = int(rank), int(world_size)

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch (before the DataLoader iterator is created)."""
        self.epoch = int(epoch)
        self.transform.set_epoch(epoch)

    def _rows(self, stream: datasets.IterableDataset, part: int, parts: int) -> Iterator[dict]:
        if self.shuffle_buffer > 0:
            stream = stream.shuffle(seed=self.seed, buffer_size=self.shuffle_buffer)
            stream.set_epoch(self.epoch)
        if parts > 1:
            stream = datasets.distributed.split_dataset_by_node(stream, rank=part, world_size=parts)
        return iter(stream)

    def _dataset_order(self, part: int) -> Iterator[int]:
        rng = np.random.default_rng([self.seed, self.epoch, part])
        while True:  # endless; the first exhausted stream ends the epoch
            counts = mixing_counts(self.probabilities, self.chunk)
            yield from rng.permutation(np.repeat(np.arange(len(self.streams)), counts)).tolist()

    def __iter__(self) -> Iterator[dict]:
        worker = torch.utils.data.get_worker_info()
        workers, worker_id = (worker.num_workers, worker.id) if worker is not None else (1, 0)
        parts, part = self.world_size * workers, self.rank * workers + worker_id
        rows = [self._rows(stream, part, parts) for stream in self.streams]
        for which in self._dataset_order(part):
            try:
                row = next(rows[which])
            except StopIteration:
                return
            yield self.transform(row)
