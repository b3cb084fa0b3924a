"""Keypoint annotation files exported as parquet shards with embedded pictures, as a `datasets` keypoint dataset."""

import json
from pathlib import Path

import datasets


def export_parquet(annotations: Path, image_dir: Path, folder: Path, shards: int = 2, prefix: str = "train") -> Path:
    """The annotation file as parquet shards `folder/{prefix}-NNNNN.parquet`, one row per annotation with its picture
    embedded; the keypoints column is named "joints" (mapped with `columns`)."""
    data = json.loads(annotations.read_text())
    names = {image["id"]: image["file_name"] for image in data["images"]}
    rows = [{"image": {"bytes": (image_dir / names[ann["image_id"]]).read_bytes(), "path": names[ann["image_id"]]},
             "image_id": ann["image_id"], "id": ann["id"], "bbox": ann["bbox"], "joints": ann["keypoints"],
             "area": ann["area"], "iscrowd": ann["iscrowd"], "num_keypoints": ann["num_keypoints"]}
            for ann in data["annotations"]]
    features = datasets.Features({
        "image": datasets.Image(), "image_id": datasets.Value("int64"), "id": datasets.Value("int64"),
        "bbox": datasets.Sequence(datasets.Value("float64")), "joints": datasets.Sequence(datasets.Value("float64")),
        "area": datasets.Value("float64"), "iscrowd": datasets.Value("int64"),
        "num_keypoints": datasets.Value("int64"),
    })
    table = datasets.Dataset.from_list(rows, features=features)
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        table.shard(shards, shard, contiguous=True).to_parquet(str(folder / f"{prefix}-{shard:05d}.parquet"))
    return folder
