"""The training augmentation: targets decode to the warped joints, flips swap sides, crops match the original's."""

import math

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from vitpose_hf.data import (
    TopDownAugmentation,
    generate_synthetic_dataset,
    keypoint_colors,
    load_keypoint_samples,
)
from vitpose_hf.data.transforms import default_upper_body_ids, load_image
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.keypoints import get_layout

MEAN = np.array([0.485, 0.456, 0.406])
STD = np.array([0.229, 0.224, 0.225])
NO_AUGMENTATION = dict(flip_prob=0.0, half_body_prob=0.0, center_jitter_prob=0.0, scale_factor=0.0, rotation_prob=0.0)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    path = generate_synthetic_dataset(root, num_images=6, layout="coco", seed=11, image_format="png")
    samples, _ = load_keypoint_samples(path, root / "images", layout="coco")
    return samples


def _pixels(pixel_values: torch.Tensor) -> np.ndarray:
    """Normalised crop -> 0-255 RGB (H, W, 3)."""
    return pixel_values.permute(1, 2, 0).numpy() * (STD * 255) + MEAN * 255


def _original_udp_matrix(center, size, rotation, output_size):
    """mmpose 0.x `get_warp_matrix(theta, size_input=2 * center, size_dst=output - 1, size_target=size)`."""
    theta = math.radians(rotation)
    sx = (output_size[0] - 1.0) / size[0]
    sy = (output_size[1] - 1.0) / size[1]
    c, s = math.cos(theta), math.sin(theta)
    return np.array([
        [c * sx, -s * sx, sx * (-center[0] * c + center[1] * s + 0.5 * size[0])],
        [s * sy, c * sy, sy * (-center[0] * s - center[1] * c + 0.5 * size[1])],
    ])


def _decode_gaussian(heatmap: np.ndarray) -> np.ndarray:
    """Argmax + exact sub-pixel centre of a sampled Gaussian (its log is a parabola): x = xi - L' / L''."""
    y, x = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    log = np.log(np.maximum(heatmap, 1e-30))
    dx = 0.5 * (log[y, x + 1] - log[y, x - 1]) / (log[y, x + 1] - 2 * log[y, x] + log[y, x - 1])
    dy = 0.5 * (log[y + 1, x] - log[y - 1, x]) / (log[y + 1, x] - 2 * log[y, x] + log[y - 1, x])
    return np.array([x - dx, y - dy])


def test_targets_decode_to_the_warped_joints(samples):
    aug = TopDownAugmentation("coco", seed=3)
    flip_index = get_layout("coco").flip_index
    stride = np.array([(192 - 1) / (48 - 1), (256 - 1) / (64 - 1)])
    checked, flipped_seen, rotated_seen = 0, 0, 0
    for epoch in range(3):
        aug.set_epoch(epoch)
        for sample in samples:
            out = aug(sample)
            matrix = out["affine"].numpy().astype(np.float64)
            joints = np.asarray(sample["keypoints"], dtype=np.float64)
            if out["flipped"]:
                joints = joints[flip_index]  # channel k holds the mirror joint of k
                flipped_seen += 1
            rotated_seen += out["rotation"] != 0
            expected = (joints[:, :2] @ matrix[:, :2].T + matrix[:, 2]) / stride
            labels = out["labels"].numpy()
            for k in range(17):
                inside = 1 <= expected[k, 0] <= 46 and 1 <= expected[k, 1] <= 62
                if joints[k, 2] > 0 and inside:
                    assert out["target_weight"][k] == 1
                    assert np.abs(_decode_gaussian(labels[k]) - expected[k]).max() < 0.1
                    checked += 1
                if joints[k, 2] == 0:
                    assert out["target_weight"][k] == 0 and labels[k].max() == 0
                # Weight 0 once the +-3 sigma window (6 px) of the Gaussian lies wholly outside the heatmap (the
                # original rounds with int(), towards zero, hence the uneven margins).
                if np.any((expected[k] < -9) | (expected[k] > np.array([48, 64]) + 6)):
                    assert out["target_weight"][k] == 0
    assert checked > 100 and flipped_seen > 0 and rotated_seen > 0


def test_crop_matches_the_original_pipeline_in_cv2(samples):
    """Mirror the image with numpy, build mmpose's UDP matrix, cv2.warpAffine: same pixels as the augmentation."""
    aug = TopDownAugmentation("coco", seed=5)
    for sample in samples[:6]:
        out = aug(sample)
        image = load_image(sample["image_path"])
        if out["flipped"]:
            image = np.ascontiguousarray(image[:, ::-1])
        matrix = _original_udp_matrix(out["box_center"].double().numpy(), out["box_size"].double().numpy(),
                                      out["rotation"], (192, 256))
        expected = cv2.warpAffine(image, matrix, (192, 256), flags=cv2.INTER_LINEAR).astype(np.float64)
        diff = np.abs(_pixels(out["pixel_values"]) - expected)
        # cv2 interpolates in fixed point (1/32 pixel): a level or two apart at most, on average far less.
        assert diff.mean() < 0.5 and np.percentile(diff, 99.5) <= 3.01


def test_flip_swaps_left_and_right(samples):
    """A flipped sample is the mirror image of the unflipped one, with left/right channels exchanged."""
    sample = max(samples, key=lambda s: sum(v > 0 for _, _, v in s["keypoints"]))
    plain = TopDownAugmentation("coco", **NO_AUGMENTATION)(sample)
    flipped = TopDownAugmentation("coco", **{**NO_AUGMENTATION, "flip_prob": 1.0})(sample)
    assert flipped["flipped"] and not plain["flipped"]
    flip_index = get_layout("coco").flip_index
    torch.testing.assert_close(flipped["labels"], plain["labels"][flip_index].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(flipped["target_weight"], plain["target_weight"][flip_index])
    assert np.abs(_pixels(flipped["pixel_values"]) - _pixels(plain["pixel_values"])[:, ::-1]).max() < 1.01
    # Each channel sits on the marker drawn for its keypoint: "left_wrist" of the mirrored crop is the person's
    # right wrist, drawn in the right wrist's colour.
    colors = np.array(keypoint_colors("coco"))
    pixels = _pixels(flipped["pixel_values"])
    keypoints = flipped["keypoints"].numpy()
    names = get_layout("coco").keypoints
    matched = 0
    for k in range(17):
        x, y, v = keypoints[k]
        if v == 2 and 2 <= x <= 189 and 2 <= y <= 253:
            color = pixels[int(round(y)), int(round(x))]
            original_name = names[flip_index[k]]
            if np.abs(color - colors[flip_index[k]]).max() < 40:
                matched += 1
            else:
                assert original_name in ("nose", "left_eye", "right_eye", "left_ear", "right_ear"), original_name
    assert matched >= 8


def test_evaluation_crop_is_the_image_processors_crop(samples):
    aug = TopDownAugmentation("coco", train=False)
    processor = VitPoseImageProcessor()
    for sample in samples[:3]:
        out = aug(sample)
        image = Image.open(sample["image_path"]).convert("RGB")
        expected = processor(image, boxes=[[sample["bbox"]]], return_tensors="pt")
        # Equal up to float32 rounding of the sampling grid (well under 1% of a grey level).
        torch.testing.assert_close(out["pixel_values"], expected["pixel_values"][0], atol=2e-4, rtol=0)
        torch.testing.assert_close(out["box_center"], expected["box_centers"][0].float())
        torch.testing.assert_close(out["box_size"], expected["box_sizes"][0].float())


def test_per_sample_seeding_is_reproducible(samples):
    sample = {**samples[0], "sample_index": 7}
    a, b = TopDownAugmentation("coco", seed=1), TopDownAugmentation("coco", seed=1)
    outs_a = [a(sample) for _ in range(2)]
    torch.testing.assert_close(outs_a[0]["pixel_values"], outs_a[1]["pixel_values"])
    torch.testing.assert_close(b(sample)["labels"], outs_a[0]["labels"])
    draws = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        out = a(sample)
        draws.add((round(float(out["box_size"][0]), 3), out["rotation"], out["flipped"]))
    assert len(draws) >= 5
    # An explicit generator overrides the per-sample one.
    torch.testing.assert_close(a(sample, rng=np.random.default_rng(0))["affine"],
                               b(sample, rng=np.random.default_rng(0))["affine"])


def test_augmentation_parameter_distributions():
    """Scale clip(N(1, .5), .5, 1.5), rotation clip(N(0, 40), -80, 80) with p=.6, flip p=.5, jitter p=.3 of +-.2 box."""
    aug = TopDownAugmentation("coco", half_body_prob=0.0)
    keypoints = np.zeros((17, 3))
    bbox = [100.0, 50.0, 60.0, 160.0]
    base = aug.sample_params(keypoints, bbox, 400, rng=None)
    rng = np.random.default_rng(0)
    draws = [aug.sample_params(keypoints, bbox, 400, rng) for _ in range(4000)]
    scale = np.array([d.scale for d in draws])
    rotation = np.array([d.rotation for d in draws])
    assert scale.min() >= 0.5 and scale.max() <= 1.5 and abs(np.median(scale) - 1) < 0.03
    assert abs(np.mean(scale == 1.5) - 0.1587) < 0.02 and abs(np.mean(scale == 0.5) - 0.1587) < 0.02
    assert np.abs(rotation).max() <= 80 and abs(np.mean(rotation == 0) - 0.4) < 0.03
    assert abs(np.mean(np.abs(rotation) == 80) - 0.6 * 0.0455) < 0.01
    assert abs(np.mean([d.flip for d in draws]) - 0.5) < 0.03
    unflipped = [d for d in draws if not d.flip]
    offsets = np.array([d.center - base.center for d in unflipped])
    moved = np.any(np.abs(offsets) > 1e-9, axis=1)
    assert abs(moved.mean() - 0.3) < 0.03
    assert np.all(np.abs(offsets[:, 0]) <= 0.2 * 60 + 1e-6) and np.all(np.abs(offsets[:, 1]) <= 0.2 * 160 + 1e-6)
    flipped = [d for d in draws if d.flip and np.allclose(d.size / d.scale, base.size)]
    assert any(np.isclose(d.center[0], 399 - base.center[0]) for d in flipped)
    for d in draws:
        np.testing.assert_allclose(d.size, base.size * d.scale, rtol=1e-6)


def test_half_body_crop(samples):
    """With p=1, the crop box is the upper or lower body's joint box (aspect 0.75, x1.5) as in the original."""
    sample = max(samples, key=lambda s: sum(v > 0 for _, _, v in s["keypoints"]))
    joints = np.asarray(sample["keypoints"], dtype=np.float64)
    visible = joints[:, 2] > 0
    assert visible.sum() > 8
    upper = np.zeros(17, dtype=bool)
    upper[:11] = True  # COCO: face, shoulders, elbows, wrists
    candidates = []
    for part in (upper, ~upper):
        chosen = joints[visible & part, :2]
        w, h = chosen.max(0) - chosen.min(0)
        w, h = (w, w / 0.75) if w > 0.75 * h else (h * 0.75, h)
        candidates.append((chosen.mean(0), np.array([w, h]) * 1.5))
    aug = TopDownAugmentation("coco", **{**NO_AUGMENTATION, "half_body_prob": 1.0})
    seen = set()
    for seed in range(12):
        params = aug.sample_params(joints, sample["bbox"], 256, np.random.default_rng(seed))
        assert params.half_body
        matches = [i for i, (c, s) in enumerate(candidates) if np.allclose(params.center, c) and np.allclose(params.size, s)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {0, 1}
    assert default_upper_body_ids("coco") == list(range(11))
    assert default_upper_body_ids("mpii") == list(range(7, 16))


def test_bad_samples_name_the_annotation(samples, tmp_path):
    aug = TopDownAugmentation("coco")
    short = {**samples[0], "keypoints": samples[0]["keypoints"][:16], "annotation_id": 42}
    with pytest.raises(ValueError, match="Annotation id 42 .* 16 keypoints"):
        aug(short)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    with pytest.raises(OSError, match=r"broken\.png.*annotation id 43"):
        aug({**samples[0], "image_path": str(broken), "annotation_id": 43})
    with pytest.raises(ValueError, match="upper_body_ids"):
        TopDownAugmentation("coco", upper_body_ids=[0, 17])
