"""VitPoseImageProcessor against OpenCV references of the original pipeline and transformers' built-in processor."""

import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from PIL import Image
from support.codec_reference import (
    ref_decode,
    ref_flip_back,
    ref_get_warp_matrix,
    ref_udp_target,
    ref_xywh2cs,
    smooth_image,
)
from transformers.utils import ModelOutput

from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.keypoints import get_layout

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def builtin_processor():
    import transformers

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return transformers.VitPoseImageProcessor()


def ref_crop(image, box, size=(192, 256)):
    """The original test pipeline: xywh -> center/scale, UDP warp matrix, cv2.warpAffine, ToTensor, Normalize."""
    center, scale = ref_xywh2cs(box)
    matrix = ref_get_warp_matrix(0.0, center * 2.0, np.array(size, dtype=np.float32) - 1.0, scale * 200.0)
    crop = cv2.warpAffine(image, matrix, size, flags=cv2.INTER_LINEAR)
    return ((crop.astype(np.float32) / 255.0 - MEAN) / STD).transpose(2, 0, 1)


@pytest.fixture(scope="module")
def image():
    return np.round(smooth_image(120, 160, seed=3)).astype(np.uint8)


BOXES = [[30.0, 20.0, 40.0, 70.0], [100.5, 60.25, 80.0, 50.0], [-20.0, -10.0, 50.0, 60.0]]


def test_crops_match_original_pipeline_and_builtin(image):
    processor = VitPoseImageProcessor()
    inputs = processor(Image.fromarray(image), boxes=[BOXES], return_tensors="pt")
    pixel_values = inputs["pixel_values"]
    assert pixel_values.shape == (3, 3, 256, 192) and pixel_values.dtype == torch.float32
    for i, box in enumerate(BOXES):
        diff = np.abs(pixel_values[i].numpy() - ref_crop(image, np.array(box)))
        # cv2 quantises positions to 1/32 pixel and rounds to uint8: < 2 grey levels, after /255/std.
        assert diff.max() < 2.0 / 255 / 0.224 and diff.mean() < 0.5 / 255 / 0.224, i
    # The built-in's scipy warp does not blend the image edge into the black border as cv2 does: compare the crop
    # of the box that lies inside the image.
    builtin = builtin_processor()(Image.fromarray(image), boxes=[BOXES], return_tensors="pt")["pixel_values"]
    assert builtin.shape == pixel_values.shape
    assert (pixel_values[0] - builtin[0]).abs().max() < 2.0 / 255 / 0.224
    assert (pixel_values[0] - builtin[0]).abs().mean() < 0.5 / 255 / 0.224
    for i, box in enumerate(BOXES):
        center, scale = ref_xywh2cs(np.array(box))
        np.testing.assert_allclose(inputs["box_centers"][i].numpy(), center, rtol=1e-6)
        np.testing.assert_allclose(inputs["box_sizes"][i].numpy(), scale * 200, rtol=1e-5)
    assert inputs["image_index"].tolist() == [0, 0, 0]


def test_input_types_give_the_same_crops(image):
    processor = VitPoseImageProcessor()
    expected = processor(Image.fromarray(image), boxes=BOXES)["pixel_values"]
    rgba = np.concatenate([image, np.full(image.shape[:2] + (1,), 7, np.uint8)], -1)
    variants = {
        "numpy hwc": image,
        "torch chw": torch.from_numpy(image).permute(2, 0, 1),
        "float 0-255": image.astype(np.float32),
        "rgba pil": Image.fromarray(rgba, mode="RGBA"),
        "rgba numpy": rgba,
        "nested boxes": Image.fromarray(image),
    }
    for name, variant in variants.items():
        boxes = [BOXES] if name == "nested boxes" else BOXES
        got = processor(variant, boxes=boxes)["pixel_values"]
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=0, msg=name)
    float01 = processor(image.astype(np.float32) / 255, boxes=BOXES, do_rescale=False)["pixel_values"]
    torch.testing.assert_close(float01, expected, atol=1e-5, rtol=0)
    xyxy = [[x, y, x + w, y + h] for x, y, w, h in BOXES]
    torch.testing.assert_close(processor(image, boxes=xyxy, box_format="xyxy")["pixel_values"], expected)

    gray = image[..., 1]
    gray_rgb = processor(np.repeat(gray[..., None], 3, -1), boxes=BOXES)["pixel_values"]
    for variant in (gray, Image.fromarray(gray), torch.from_numpy(gray), gray[..., None]):
        torch.testing.assert_close(processor(variant, boxes=BOXES)["pixel_values"], gray_rgb, atol=1e-5, rtol=0)


def test_batches_of_images_of_different_sizes(image):
    processor = VitPoseImageProcessor(size={"height": 64, "width": 48})
    small = np.ascontiguousarray(image[:90, :100])
    boxes = [[BOXES[0]], [], [BOXES[1], BOXES[0]]]
    inputs = processor([image, small, small], boxes=boxes)
    assert inputs["pixel_values"].shape == (3, 3, 64, 48)
    assert inputs["image_index"].tolist() == [0, 2, 2]
    singles = [processor(img, boxes=[box], size={"height": 64, "width": 48})["pixel_values"][0]
               for img, box in ((image, BOXES[0]), (small, BOXES[1]), (small, BOXES[0]))]
    torch.testing.assert_close(inputs["pixel_values"], torch.stack(singles))
    empty = processor([image, small], boxes=[[], []])
    assert empty["pixel_values"].shape == (0, 3, 64, 48)
    batch = processor(np.stack([image, image]), boxes=np.array([[BOXES[0]], [BOXES[1]]]))
    assert batch["image_index"].tolist() == [0, 1]
    np_out = processor(image, boxes=BOXES, return_tensors="np")
    assert isinstance(np_out["pixel_values"], np.ndarray) and np_out["pixel_values"].shape == (3, 3, 64, 48)


def test_boxes_outside_the_image_give_black_padded_crops(image):
    processor = VitPoseImageProcessor(size={"height": 64, "width": 48})
    inputs = processor(image, boxes=[[500.0, 500.0, 30.0, 40.0], [-30.0, -40.0, 50.0, 60.0]])
    black = torch.from_numpy(-MEAN / STD).view(3, 1, 1).expand(3, 64, 48)
    torch.testing.assert_close(inputs["pixel_values"][0], black)
    partial = inputs["pixel_values"][1]
    torch.testing.assert_close(partial[:, 0, 0], black[:, 0, 0])
    assert (partial - black).abs().amax() > 1.0
    ref = ref_crop(image, np.array([-30.0, -40.0, 50.0, 60.0]), (48, 64))
    assert np.abs(partial.numpy() - ref).max() < 2.0 / 255 / 0.224


@pytest.mark.parametrize(
    "bad_box, message",
    [
        ([10.0, 10.0, 0.0, 20.0], "Box 1 of image 0"),
        ([10.0, 10.0, 20.0, -5.0], "Box 1 of image 0"),
        ([float("nan"), 10.0, 20.0, 20.0], "Box 1 of image 0"),
        ([10.0, 10.0, float("inf"), 20.0], "Box 1 of image 0"),
    ],
)
def test_invalid_boxes_are_named(image, bad_box, message):
    processor = VitPoseImageProcessor()
    with pytest.raises(ValueError, match=message):
        processor(image, boxes=[BOXES[0], bad_box])
    with pytest.raises(ValueError, match=message.replace("image 0", "image 1")):
        processor([image, image], boxes=[[BOXES[0]], [BOXES[0], bad_box]])
    heatmaps = torch.rand(2, 17, 64, 48)
    with pytest.raises(ValueError, match=message):
        processor.post_process_pose_estimation(heatmaps, boxes=[[BOXES[0], bad_box]])


def test_other_bad_inputs_are_clear(image):
    processor = VitPoseImageProcessor()
    with pytest.raises(ValueError, match="2 image"):
        processor([image, image], boxes=[[BOXES[0]]])
    with pytest.raises(ValueError, match="boxes are required"):
        processor(image)
    with pytest.raises(ValueError, match=r"Boxes of image 0 must have shape \(n, 4\)"):
        processor(image, boxes=[[1.0, 2.0, 3.0]])
    with pytest.raises(ValueError, match="box_format"):
        processor(image, boxes=BOXES, box_format="cxcywh")
    with pytest.raises(ValueError, match="Image 0"):
        processor(np.zeros((5, 5, 2), np.uint8), boxes=BOXES)
    with pytest.raises(ValueError, match="heatmaps for 2 crops but 3 boxes"):
        processor.post_process_pose_estimation(torch.rand(2, 17, 64, 48), boxes=[BOXES])
    with pytest.raises(ValueError, match="pass `dataset`"):
        processor.post_process_pose_estimation(torch.rand(3, 5, 64, 48), boxes=[BOXES], flipped_outputs=torch.rand(3, 5, 64, 48))


def smooth_heatmaps_for(num, seed=0):
    rng = np.random.default_rng(seed)
    joints = np.stack([rng.uniform(5, 187, (num, 17)), rng.uniform(5, 251, (num, 17))], -1)
    maps = np.stack([ref_udp_target(j, np.ones(17), (192, 256), (48, 64))[0] for j in joints])
    return (maps * rng.uniform(0.3, 1.0, (num, 17, 1, 1)) + rng.uniform(0, 0.02, maps.shape)).astype(np.float32)


def ref_post_process(heatmaps, boxes):
    """Original decode + transform_preds for every box (xywh)."""
    coords, scores = ref_decode(heatmaps)
    out = []
    for n, box in enumerate(boxes):
        center, scale = ref_xywh2cs(np.array(box))
        s = scale * 200.0
        x = coords[n, :, 0] * s[0] / (heatmaps.shape[3] - 1.0) + center[0] - s[0] * 0.5
        y = coords[n, :, 1] * s[1] / (heatmaps.shape[2] - 1.0) + center[1] - s[1] * 0.5
        out.append((np.stack([x, y], -1), scores[n]))
    return out


def test_post_process_matches_original_decoding():
    processor = VitPoseImageProcessor()
    boxes = [[BOXES[0], BOXES[1]], [], [BOXES[2]]]
    maps = smooth_heatmaps_for(3)
    results = processor.post_process_pose_estimation(ModelOutput(heatmaps=torch.from_numpy(maps)), boxes=boxes)
    assert [len(people) for people in results] == [2, 0, 1]
    reference = ref_post_process(maps, [BOXES[0], BOXES[1], BOXES[2]])
    people = results[0] + results[2]
    for person, (ref_keypoints, ref_scores), box in zip(people, reference, [BOXES[0], BOXES[1], BOXES[2]]):
        assert person["keypoints"].shape == (17, 2) and person["scores"].shape == (17,)
        assert np.abs(person["keypoints"].numpy() - ref_keypoints).max() < 1e-3 * 4  # 1e-3 heatmap px, in image px
        np.testing.assert_array_equal(person["scores"].numpy(), ref_scores)
        assert person["labels"].tolist() == list(range(17))
        x, y, w, h = box
        np.testing.assert_allclose(person["bbox"].numpy(), [x, y, x + w, y + h], rtol=1e-6)

    # A plain tensor works too, and a threshold keeps only confident keypoints (as the built-in does).
    kept = processor.post_process_pose_estimation(torch.from_numpy(maps), boxes=boxes, threshold=0.6)
    for person, (_, ref_scores) in zip(kept[0] + kept[2], reference):
        assert person["labels"].tolist() == np.nonzero(ref_scores > 0.6)[0].tolist()
        assert person["keypoints"].shape == (int((ref_scores > 0.6).sum()), 2)


def test_post_process_agrees_with_builtin_up_to_its_blur():
    """transformers' built-in blurs with sigma 0.8 instead of 2.0; on clean Gaussian heatmaps both find the joint."""
    processor = VitPoseImageProcessor()
    rng = np.random.default_rng(1)
    joints = np.stack([rng.uniform(30, 162, (2, 17)), rng.uniform(30, 226, (2, 17))], -1)  # crop pixels
    maps = np.stack([ref_udp_target(j, np.ones(17), (192, 256), (48, 64))[0] for j in joints])
    ours = processor.post_process_pose_estimation(torch.from_numpy(maps), boxes=[BOXES[:2]])[0]
    outputs = ModelOutput(heatmaps=torch.from_numpy(maps))
    theirs = builtin_processor().post_process_pose_estimation(outputs, boxes=[BOXES[:2]])[0]
    for n, (a, b) in enumerate(zip(ours, theirs)):
        center, scale = ref_xywh2cs(np.array(BOXES[n]))
        pixel = scale * 200 / np.array([191.0, 255.0])  # image pixels per crop pixel
        truth = joints[n] * pixel + center - scale * 100
        heatmap_pixel = (pixel * 191 / 47).max()
        np.testing.assert_array_equal(a["scores"].numpy(), b["scores"].numpy())
        assert np.abs(a["keypoints"].numpy() - truth).max() < 0.05 * heatmap_pixel
        assert np.abs(b["keypoints"].numpy() - truth).max() < 0.25 * heatmap_pixel
        assert a["labels"].tolist() == b["labels"].tolist()


def test_flip_test_merges_with_layout_flip_pairs():
    processor = VitPoseImageProcessor()
    maps = smooth_heatmaps_for(2, seed=2)
    flipped = smooth_heatmaps_for(2, seed=3)
    pairs = get_layout("coco").flip_pairs
    merged = (maps + ref_flip_back(flipped, pairs)) * 0.5
    reference = ref_post_process(merged, BOXES[:2])
    for dataset in (None, "coco", get_layout("coco")):
        people = processor.post_process_pose_estimation(
            torch.from_numpy(maps), boxes=[BOXES[:2]], flipped_outputs=ModelOutput(heatmaps=torch.from_numpy(flipped)),
            dataset=dataset,
        )[0]
        for person, (ref_keypoints, ref_scores) in zip(people, reference):
            assert np.abs(person["keypoints"].numpy() - ref_keypoints).max() < 4e-3
            np.testing.assert_allclose(person["scores"].numpy(), ref_scores, rtol=1e-6)
    pixel_values = torch.rand(2, 3, 8, 6)
    np.testing.assert_array_equal(processor.flip_pixel_values(pixel_values).numpy(), pixel_values.numpy()[..., ::-1])


def test_keypoint_drawn_in_the_image_comes_back():
    """A blob at a known place -> processor crop -> heatmap sampled from the crop (cv2) -> post-processing."""
    height, width = 200, 260
    target = np.array([121.7, 88.2])
    boxes = [[80.0, 30.0, 90.0, 140.0], [60.0, 50.0, 150.0, 100.0]]
    ys, xs = np.mgrid[0:height, 0:width]
    processor = VitPoseImageProcessor()
    maps = []
    for box in boxes:
        sigma = 2.0 * ref_xywh2cs(np.array(box))[1][1] * 200 / 63  # 2 heatmap pixels, in image pixels
        blob = 255 * np.exp(-((xs - target[0]) ** 2 + (ys - target[1]) ** 2) / (2 * sigma**2))
        image = np.repeat(blob[..., None], 3, -1).astype(np.float32)
        crop = processor(image, boxes=[box])["pixel_values"][0, 0].numpy() * STD[0] + MEAN[0]
        to_heatmap = np.array([[47 / 191, 0, 0], [0, 63 / 255, 0]], dtype=np.float32)
        maps.append(cv2.warpAffine(crop, to_heatmap, (48, 64), flags=cv2.INTER_LINEAR))
    heatmaps = torch.from_numpy(np.stack(maps)[:, None]).float()
    people = processor.post_process_pose_estimation(heatmaps, boxes=[boxes], flipped_outputs=None)[0]
    for person in people:
        assert np.abs(person["keypoints"][0].numpy() - target).max() < 0.5


def test_config_round_trip_and_builtin_config(tmp_path):
    processor = VitPoseImageProcessor(size={"height": 384, "width": 288}, padding=1.3, image_std=[0.2, 0.2, 0.2])
    processor.save_pretrained(tmp_path / "ours")
    loaded = VitPoseImageProcessor.from_pretrained(tmp_path / "ours")
    assert loaded.to_dict() == processor.to_dict()
    assert loaded.size == {"height": 384, "width": 288} and loaded.padding == 1.3 and loaded.image_std == [0.2] * 3
    overridden = VitPoseImageProcessor.from_pretrained(tmp_path / "ours", size={"height": 256, "width": 192})
    assert overridden.size == {"height": 256, "width": 192}

    # The keys of transformers' built-in checkpoints (usyd-community/vitpose-*), written out by hand...
    builtin_keys = {
        "do_affine_transform": True, "do_normalize": True, "do_rescale": True, "image_mean": [0.485, 0.456, 0.406],
        "image_processor_type": "VitPoseImageProcessor", "image_std": [0.229, 0.224, 0.225], "normalize_factor": 200.0,
        "rescale_factor": 0.00392156862745098, "size": {"height": 256, "width": 192},
    }
    (tmp_path / "builtin").mkdir()
    (tmp_path / "builtin" / "preprocessor_config.json").write_text(json.dumps(builtin_keys))
    from_builtin = VitPoseImageProcessor.from_pretrained(tmp_path / "builtin")
    for key, value in builtin_keys.items():
        if key != "image_processor_type":
            assert getattr(from_builtin, key) == value, key
    # ... and as transformers' own processor saves them.
    builtin_processor().save_pretrained(tmp_path / "saved_by_transformers")
    from_saved = VitPoseImageProcessor.from_pretrained(tmp_path / "saved_by_transformers")
    assert from_saved.size == {"height": 256, "width": 192} and from_saved.do_affine_transform
    image = np.round(smooth_image(60, 80)).astype(np.uint8)
    torch.testing.assert_close(
        from_saved(image, boxes=BOXES)["pixel_values"], VitPoseImageProcessor()(image, boxes=BOXES)["pixel_values"]
    )


def test_pre_cropped_images_without_affine_transform():
    processor = VitPoseImageProcessor(do_affine_transform=False, size={"height": 8, "width": 6})
    crops = np.random.default_rng(0).integers(0, 256, (2, 8, 6, 3), dtype=np.uint8)
    out = processor(list(crops))["pixel_values"].numpy()
    np.testing.assert_allclose(out, ((crops / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2), atol=1e-5)
    with pytest.raises(ValueError, match="Image 0"):
        processor(np.zeros((9, 6, 3), np.uint8))
