"""Annotation loading: COCO-format through pycocotools, MPII and AI Challenger converters, skips and errors."""

import json
import logging

import datasets
import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from vitpose_hf.data import (
    AnnotationError,
    TopDownAugmentation,
    collate_keypoints,
    generate_synthetic_dataset,
    load_keypoint_dataset,
    load_keypoint_samples,
)


def _keypoints(k: int, visible: int = 17, x0: float = 20.0) -> list[float]:
    flat = []
    for i in range(k):
        flat += [x0 + i, 30.0 + i, 2] if i < visible else [0, 0, 0]
    return flat


def _write_image(path, size=(64, 48)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path)


@pytest.fixture()
def coco_file(tmp_path):
    """A hand-made COCO file exercising every rule of the original loader."""
    for name in ("a.png", "b.png"):
        _write_image(tmp_path / "images" / name)
    anns = [
        dict(category_id=1, id=1, image_id=1, bbox=[10, 5, 30, 40], area=900, iscrowd=0, num_keypoints=17, keypoints=_keypoints(17)),
        dict(category_id=1, id=2, image_id=1, bbox=[0, 0, 64, 48], area=900, iscrowd=1, num_keypoints=17, keypoints=_keypoints(17)),
        dict(category_id=1, id=3, image_id=1, bbox=[10, 5, 30, 40], area=900, iscrowd=0, num_keypoints=0, keypoints=_keypoints(17, 0)),
        dict(category_id=1, id=4, image_id=1, bbox=[10, 5, 1, 40], area=40, iscrowd=0, num_keypoints=3, keypoints=_keypoints(17, 3)),
        dict(category_id=1, id=5, image_id=2, bbox=[-5, 40, 100, 20], area=900, iscrowd=0, num_keypoints=3, keypoints=_keypoints(17, 3)),
        dict(category_id=1, id=6, image_id=2, bbox=[70, 10, 10, 10], area=100, iscrowd=0, num_keypoints=3, keypoints=_keypoints(17, 3)),
        dict(category_id=1, id=7, image_id=2, bbox=[10, 10, 10, 10], area=0, iscrowd=0, num_keypoints=3, keypoints=_keypoints(17, 3)),
        dict(category_id=1, id=8, image_id=2, bbox=[10, 10, 20, 20], iscrowd=0, keypoints=_keypoints(17, 2)),
        dict(category_id=1, id=9, image_id=2, bbox=[10, 10, 20, 20], area=400, iscrowd=0, num_keypoints=5, keypoints=[0] * 51),
    ]
    data = {
        "images": [dict(id=1, file_name="a.png", width=64, height=48), dict(id=2, file_name="b.png", width=64, height=48)],
        "annotations": anns,
        "categories": [dict(id=1, name="person", keypoints=[f"k{i}" for i in range(17)], skeleton=[])],
    }
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, data


def _original_kept(data):
    """mmpose 0.x TopDownCocoDataset: getAnnIds(iscrowd=False), clean_bbox, then the keypoint checks."""
    kept = {}
    images = {im["id"]: im for im in data["images"]}
    for obj in data["annotations"]:
        if obj.get("iscrowd"):
            continue
        width, height = images[obj["image_id"]]["width"], images[obj["image_id"]]["height"]
        x, y, w, h = obj["bbox"]
        x1, y1 = max(0, x), max(0, y)
        x2, y2 = min(width - 1, x1 + max(0, w - 1)), min(height - 1, y1 + max(0, h - 1))
        if not (("area" not in obj or obj["area"] > 0) and x2 > x1 and y2 > y1):
            continue
        if max(obj["keypoints"]) == 0 or obj.get("num_keypoints", 1) == 0:
            continue
        kept[obj["id"]] = [x1, y1, x2 - x1, y2 - y1]
    return kept


def test_coco_loading_follows_the_original_rules(coco_file, tmp_path):
    path, data = coco_file
    samples, report = load_keypoint_samples(path, tmp_path / "images", layout="coco", dataset_index=2)
    expected = _original_kept(data)
    assert {s["annotation_id"]: s["bbox"] for s in samples} == expected
    assert sorted(expected) == [1, 5, 8]
    first = samples[0]
    assert first["image_path"] == str(tmp_path / "images" / "a.png") and first["image_id"] == 1
    np.testing.assert_array_equal(np.array(first["keypoints"]), np.array(_keypoints(17)).reshape(17, 3))
    assert first["dataset"] == "coco" and first["dataset_index"] == 2 and first["sample_index"] == 0
    assert (first["image_width"], first["image_height"]) == (64, 48)
    assert report.num_samples == 3 and report.num_errors == 0
    assert report.skipped == {"crowd": 1, "no_keypoints": 2, "empty_box": 3}


def test_synthetic_dataset_round_trip(tmp_path):
    path = generate_synthetic_dataset(tmp_path, 5, layout="coco", seed=2)
    annotations = json.loads(path.read_text())["annotations"]
    samples, report = load_keypoint_samples(path, tmp_path / "images")
    assert len(samples) == sum(a["num_keypoints"] > 0 for a in annotations) == report.num_samples
    for sample in samples:
        ann = next(a for a in annotations if a["id"] == sample["annotation_id"])
        np.testing.assert_allclose(np.array(sample["keypoints"]).ravel(), ann["keypoints"])


def test_mpii_converter(tmp_path):
    _write_image(tmp_path / "img" / "001.jpg", (200, 150))
    joints = [[10.0 + i, 20.0 + 2 * i] for i in range(16)]
    entries = [
        {"image": "001.jpg", "joints": joints, "joints_vis": [1] * 15 + [0], "center": [100.0, 80.0], "scale": 0.5},
        {"image": "001.jpg", "joints": joints, "joints_vis": [0] * 16, "center": [50.0, 60.0], "scale": 0.4},
    ]
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps(entries))
    samples, report = load_keypoint_samples(path, tmp_path / "img", layout="mpii", format="mpii", dataset_index=2)
    assert len(samples) == 1 and report.skipped["no_keypoints"] == 1
    sample = samples[0]
    kp = np.array(sample["keypoints"])
    np.testing.assert_allclose(kp[:15, :2], np.array(joints[:15]) - 1)  # MATLAB 1-based -> 0-based
    assert kp[:15, 2].tolist() == [2] * 15 and kp[15].tolist() == [0, 0, 0]
    # Square box of side scale * 200 around the centre moved down by 15 * scale (then 0-based).
    cx, cy, side = 100 - 1, 80 + 15 * 0.5 - 1, 100
    expected_box = [cx - side / 2, cy - side / 2, side - 1, side - 1]  # the original's clean-box "w - 1" convention
    np.testing.assert_allclose(sample["bbox"], expected_box)
    assert sample["annotation_id"] == 1 and sample["dataset_index"] == 2


def test_aic_converter(tmp_path):
    _write_image(tmp_path / "img" / "abc.jpg", (300, 200))
    values = []
    for i, flag in enumerate([1, 2, 3] * 4 + [1, 1]):
        values += [10 + i, 20 + i, flag]
    entries = [{
        "image_id": "abc", "url": "",
        "keypoint_annotations": {"human1": values, "human2": [0, 0, 3] * 14},
        "human_annotations": {"human1": [5, 6, 105, 206], "human2": [1, 1, 50, 50]},
    }]
    path = tmp_path / "aic.json"
    path.write_text(json.dumps(entries))
    samples, report = load_keypoint_samples(path, tmp_path / "img", layout="aic", format="aic")
    assert len(samples) == 1 and report.skipped["no_keypoints"] == 1
    kp = np.array(samples[0]["keypoints"])
    assert kp[:, 2].tolist() == [2, 1, 0] * 4 + [2, 2]  # AIC 1 visible / 2 occluded / 3 unlabelled -> COCO
    assert kp[2].tolist() == [0, 0, 0] and kp[0, :2].tolist() == [10, 20]
    np.testing.assert_allclose(samples[0]["bbox"], [5, 6, 99, 199])
    assert samples[0]["image_path"].endswith("abc.jpg")


def test_missing_image_is_named_or_skipped(coco_file, tmp_path, caplog):
    path, _ = coco_file
    (tmp_path / "images" / "b.png").unlink()
    with pytest.raises(AnnotationError, match=r"b\.png.*annotation id 5 .*ann\.json"):
        load_keypoint_samples(path, tmp_path / "images")
    with caplog.at_level(logging.WARNING):
        samples, report = load_keypoint_samples(path, tmp_path / "images", on_error="skip")
    assert [s["annotation_id"] for s in samples] == [1]
    assert report.skipped["missing_image"] == 2 and report.num_errors == 2
    assert "missing_image" in str(report) and "b.png" in caplog.text


def test_wrong_keypoint_count_is_named(coco_file, tmp_path):
    path, data = coco_file
    data["annotations"][0]["keypoints"] = data["annotations"][0]["keypoints"][:48]
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"annotation id 1 .*48 values.*17 x 3 = 51"):
        load_keypoint_samples(path, tmp_path / "images")
    samples, report = load_keypoint_samples(path, tmp_path / "images", on_error="skip")
    assert report.skipped["bad_keypoints"] == 1 and [s["annotation_id"] for s in samples] == [5, 8]
    with pytest.raises(AnnotationError, match=r"category 1 .*17 keypoints.*'mpii' has 16"):
        load_keypoint_samples(path, tmp_path / "images", layout="mpii")


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"images": []}), "no 'annotations' list"),
        (json.dumps({"images": [{"id": 1}], "annotations": []}), "image entry 0 needs 'id' and 'file_name'"),
        (json.dumps({"images": [], "annotations": [{"image_id": 1}]}), "annotation entry 0 needs 'id', 'image_id' and 'category_id'"),
        (json.dumps([1, 2]), "must hold a JSON object"),
    ],
)
def test_malformed_files_are_named(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(AnnotationError, match=message) as error:
        load_keypoint_samples(path, tmp_path)
    assert "bad.json" in str(error.value)


def test_malformed_converter_input_is_named(tmp_path):
    path = tmp_path / "mpii.json"
    path.write_text(json.dumps([{"image": "x.jpg", "joints": [[1, 2]] * 16, "joints_vis": [1] * 16}]))
    with pytest.raises(AnnotationError, match=r"MPII annotation id 1 .*mpii\.json.*'center'"):
        load_keypoint_samples(path, tmp_path, layout="mpii", format="mpii")
    path.write_text(json.dumps([{"image_id": "x", "keypoint_annotations": {"h1": [0] * 42}, "human_annotations": {}}]))
    with pytest.raises(AnnotationError, match=r"annotation id 1 \('x' h1\).*no box"):
        load_keypoint_samples(path, tmp_path, layout="aic", format="aic")
    with pytest.raises(FileNotFoundError, match="nothing.json"):
        load_keypoint_samples(tmp_path / "nothing.json", tmp_path)


def test_huggingface_dataset_with_on_the_fly_augmentation(tmp_path):
    path = generate_synthetic_dataset(tmp_path, 4, layout="coco", seed=4)
    plain = load_keypoint_dataset(path, tmp_path / "images", dataset_name="synthetic")
    assert isinstance(plain, datasets.Dataset)
    assert plain.column_names == ["image_path", "image_id", "annotation_id", "bbox", "keypoints", "dataset",
                                  "dataset_index", "sample_index", "image_width", "image_height"]
    assert plain[0]["dataset"] == "synthetic" and len(plain[0]["keypoints"]) == 17
    augmented, report = load_keypoint_dataset(path, tmp_path / "images", transform=TopDownAugmentation("coco", seed=1),
                                              return_report=True)
    assert len(augmented) == report.num_samples == len(plain)
    item = augmented[1]
    assert item["pixel_values"].shape == (3, 256, 192) and item["labels"].shape == (17, 64, 48)
    assert item["target_weight"].shape == (17,) and item["annotation_id"] == plain[1]["annotation_id"]
    torch.testing.assert_close(augmented[1]["pixel_values"], item["pixel_values"])  # same sample, same draw
    batch = next(iter(DataLoader(augmented, batch_size=3, collate_fn=collate_keypoints)))
    assert batch["pixel_values"].shape == (3, 3, 256, 192) and batch["dataset_index"].tolist() == [0, 0, 0]
    # Any per-sample callable works as the transform.
    sized = load_keypoint_dataset(path, tmp_path / "images", transform=lambda s: {"n": len(s["keypoints"])})
    assert sized[0] == {"n": 17}
