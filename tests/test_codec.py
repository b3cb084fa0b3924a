"""The codec against the original ViTPose algorithms (mmpose 0.x), re-written here in plain numpy / OpenCV."""


import cv2
import numpy as np
import pytest
import torch

# ----------------------------------------------------------------------------------------------------------------
# Independent references: the original release's functions, written out in numpy / cv2.
# ----------------------------------------------------------------------------------------------------------------
from support.codec_reference import (
    ref_decode,
    ref_flip_back,
    ref_get_warp_matrix,
    ref_udp_target,
    ref_xywh2cs,
    smooth_heatmaps,
    smooth_image,
)

from vitpose_hf.codec import (
    UDPHeatmapCodec,
    flip_heatmaps_back,
    flip_images,
    gaussian_blur,
    merge_flip_test,
)
from vitpose_hf.geometry import (
    box_to_center_scale,
    get_udp_warp_matrix,
    invert_affine,
    transform_points,
    warp_affine,
)


def test_box_to_center_scale_matches_original():
    boxes = np.array([[10, 20, 100, 50], [5.5, 7.25, 30, 200], [0, 0, 75, 100], [-20, 30, 3, 4]], dtype=np.float32)
    center, size = box_to_center_scale(torch.from_numpy(boxes))
    for i, box in enumerate(boxes):
        ref_center, ref_scale = ref_xywh2cs(box)
        np.testing.assert_allclose(center[i].numpy(), ref_center, rtol=1e-6)
        np.testing.assert_allclose(size[i].numpy(), ref_scale * 200, rtol=1e-5)
    xyxy = boxes.copy()
    xyxy[:, 2:] += xyxy[:, :2]
    center2, size2 = box_to_center_scale(torch.from_numpy(xyxy), box_format="xyxy")
    torch.testing.assert_close(center2, center)
    torch.testing.assert_close(size2, size)
    with pytest.raises(ValueError, match="box_format"):
        box_to_center_scale(torch.from_numpy(boxes), box_format="cxcywh")


def test_warp_matrix_and_point_transform_match_original():
    rng = np.random.default_rng(1)
    center = rng.uniform(50, 400, (5, 2)).astype(np.float32)
    size = rng.uniform(30, 300, (5, 2)).astype(np.float32)
    rotation = np.array([0, 30, -45, 80, 181], dtype=np.float32)
    matrices = get_udp_warp_matrix(torch.from_numpy(center), torch.from_numpy(size), torch.from_numpy(rotation), (256, 192))
    points = rng.uniform(0, 500, (5, 17, 2)).astype(np.float32)
    moved = transform_points(torch.from_numpy(points), matrices).numpy()
    for i in range(5):
        ref = ref_get_warp_matrix(rotation[i], center[i] * 2.0, np.array([191.0, 255.0]), size[i])
        np.testing.assert_allclose(matrices[i].numpy(), ref, rtol=1e-5, atol=1e-4)
        np.testing.assert_allclose(moved[i], cv2.transform(points[i][None], ref)[0], rtol=1e-5, atol=1e-3)
    # The box spans the crop exactly: its left/top edge -> 0, right/bottom edge -> W-1 / H-1.
    corners = torch.from_numpy(np.stack([center - size / 2, center + size / 2], 1))
    edges = transform_points(corners, get_udp_warp_matrix(torch.from_numpy(center), torch.from_numpy(size), None, (256, 192)))
    torch.testing.assert_close(edges[:, 0], torch.zeros(5, 2), atol=1e-3, rtol=0)
    torch.testing.assert_close(edges[:, 1], torch.tensor([[191.0, 255.0]]).expand(5, 2), atol=1e-3, rtol=0)
    round_trip = transform_points(transform_points(torch.from_numpy(points), matrices), invert_affine(matrices))
    torch.testing.assert_close(round_trip, torch.from_numpy(points), atol=1e-3, rtol=0)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_warp_affine_matches_cv2(dtype):
    image = smooth_image(120, 160)
    image = image.astype(dtype) if dtype == np.float32 else np.round(image).astype(np.uint8)
    # Boxes inside, partly outside and fully outside the image; with and without rotation.
    boxes = np.array([[20, 10, 60, 90], [-30, -20, 80, 70], [130, 90, 100, 100], [400, 400, 20, 30]], np.float32)
    rotation = np.array([0.0, 25.0, -60.0, 0.0], np.float32)
    center, size = box_to_center_scale(torch.from_numpy(boxes))
    matrices = get_udp_warp_matrix(center, size, torch.from_numpy(rotation), (64, 48))
    tensor = torch.from_numpy(image).permute(2, 0, 1)
    crops = warp_affine(tensor, matrices, (64, 48))
    assert crops.shape == (4, 3, 64, 48) and crops.dtype == torch.float32
    for i, box in enumerate(boxes):
        c, s = ref_xywh2cs(box)
        ref_matrix = ref_get_warp_matrix(rotation[i], c * 2.0, np.array([47.0, 63.0]), s * 200.0)
        ref = cv2.warpAffine(image, ref_matrix, (48, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=0).astype(np.float32)
        ours = crops[i].permute(1, 2, 0).numpy()
        # cv2 quantises sample positions to 1/32 pixel (and rounds uint8 results): a few grey levels at most.
        assert np.abs(ours - ref).max() < 3.0, i
        assert np.abs(ours - ref).mean() < 0.5, i
    assert crops[3].abs().max() == 0  # a box outside the image gives a black crop
    assert crops[1, :, 0, 0].abs().max() == 0 and crops[1].abs().max() > 0


def test_warp_affine_many_images_of_different_sizes():
    images = [torch.from_numpy(smooth_image(60, 80, seed=1)).permute(2, 0, 1),
              torch.from_numpy(smooth_image(90, 50, seed=2)).permute(2, 0, 1)]
    boxes = torch.tensor([[5.0, 5, 40, 40], [10, 20, 30, 60], [0, 0, 50, 50]])
    image_index = [1, 0, 1]
    center, size = box_to_center_scale(boxes)
    matrices = get_udp_warp_matrix(center, size, None, (32, 24))
    crops = warp_affine(images, matrices, (32, 24), image_index=image_index)
    for i, j in enumerate(image_index):
        ref = cv2.warpAffine(images[j].permute(1, 2, 0).numpy(), matrices[i].numpy(), (24, 32), flags=cv2.INTER_LINEAR)
        assert np.abs(crops[i].permute(1, 2, 0).numpy() - ref).max() < 3.0
    with pytest.raises(ValueError, match="image_index"):
        warp_affine(images, matrices, (32, 24))


def test_warp_affine_border_value_and_value_transform_match_cv2():
    image = smooth_image(100, 140, seed=4)
    scale, shift = np.array([0.5, 2.0, -1.0], np.float32), np.array([3.0, -7.0, 100.0], np.float32)
    border = [10.0, -20.0, 30.0]
    boxes = torch.tensor([[60.0, 40.0, 50.0, 50.0], [-20.0, 70.0, 60.0, 60.0], [300.0, 300.0, 10.0, 10.0]])
    center, size = box_to_center_scale(boxes)
    matrices = get_udp_warp_matrix(center, size, torch.tensor([10.0, -30.0, 0.0]), (56, 40))
    crops = warp_affine(torch.from_numpy(image).permute(2, 0, 1), matrices, (56, 40), border_value=border,
                        scale=scale, shift=shift)
    transformed = image * scale + shift
    for i in range(3):
        ref = cv2.warpAffine(transformed, matrices[i].numpy(), (40, 56), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=border)
        assert np.abs(crops[i].permute(1, 2, 0).numpy() - ref).max() < 6.0  # value range here is ~500
        assert np.abs(crops[i].permute(1, 2, 0).numpy() - ref).mean() < 0.5
    np.testing.assert_allclose(crops[2].numpy(), np.broadcast_to(np.array(border)[:, None, None], (3, 56, 40)))


@pytest.mark.parametrize("shape", [(64, 48), (7, 5), (3, 2), (1, 4)])
def test_gaussian_blur_matches_cv2(shape):
    rng = np.random.default_rng(2)
    maps = rng.random((2, 3) + shape).astype(np.float32)
    ours = gaussian_blur(torch.from_numpy(maps), 11).numpy()
    for i in range(2):
        for j in range(3):
            ref = cv2.GaussianBlur(maps[i, j], (11, 11), 0)
            np.testing.assert_allclose(ours[i, j], ref, rtol=1e-5, atol=1e-6)


def test_encode_matches_original():
    rng = np.random.default_rng(3)
    codec = UDPHeatmapCodec(input_size=(256, 192), heatmap_size=(64, 48))
    joints = rng.uniform(-40, 290, (4, 17, 2)).astype(np.float32)
    joints[0, :3] = [[0.0, 0.0], [191.0, 255.0], [95.3, 127.8]]
    joints[0, 3:6] = [[-25.0, 100.0], [-28.0, 100.0], [100.0, 290.0]]  # just inside / outside the +-3 sigma square
    visible = (rng.random((4, 17)) > 0.2).astype(np.float32)
    heatmaps, weights = codec.encode(torch.from_numpy(joints), torch.from_numpy(visible))
    assert heatmaps.shape == (4, 17, 64, 48) and heatmaps.dtype == torch.float32
    for n in range(4):
        ref_target, ref_weight = ref_udp_target(joints[n], visible[n], (192, 256), (48, 64))
        np.testing.assert_allclose(heatmaps[n].numpy(), ref_target, atol=1e-5)
        np.testing.assert_array_equal(weights[n].numpy(), ref_weight)
    assert 0 < weights.sum() < weights.numel()


def test_decode_matches_original_on_smooth_heatmaps():
    rng = np.random.default_rng(4)
    maps = smooth_heatmaps(rng, 6, 17, 64, 48)
    ref_coords, ref_scores = ref_decode(maps)
    coords, scores = UDPHeatmapCodec().decode(torch.from_numpy(maps))
    np.testing.assert_array_equal(scores.numpy(), ref_scores)
    assert np.abs(coords.numpy() - ref_coords).max() < 1e-3


def test_decode_first_maximum_and_non_positive_maps():
    maps = np.zeros((1, 3, 8, 6), dtype=np.float32)
    maps[0, 0, 2, 3] = maps[0, 0, 5, 1] = 1.0  # two equal maxima: the first in row-major order wins
    maps[0, 1] = -1.0
    coords, scores = UDPHeatmapCodec(heatmap_size=(8, 6)).decode(torch.from_numpy(maps))
    ref_coords, ref_scores = ref_decode(maps[:, :1])
    np.testing.assert_allclose(coords[0, 0].numpy(), ref_coords[0, 0], atol=1e-4)
    assert abs(coords[0, 0, 0].item() - 3) < 0.5 and abs(coords[0, 0, 1].item() - 2) < 0.5
    assert coords[0, 1].tolist() == [-1.0, -1.0] and scores[0, 1].item() == -1.0
    assert coords[0, 2].tolist() == [-1.0, -1.0] and scores[0, 2].item() == 0.0


def test_encode_then_decode_recovers_sub_pixel_joints():
    rng = np.random.default_rng(5)
    codec = UDPHeatmapCodec()
    joints = np.stack([rng.uniform(20, 172, (3, 17)), rng.uniform(20, 236, (3, 17))], -1).astype(np.float32)
    heatmaps, weights = codec.encode(torch.from_numpy(joints), torch.ones(3, 17))
    assert weights.min() == 1
    coords, scores = codec.decode(heatmaps)
    expected = joints / np.array([191 / 47, 255 / 63], dtype=np.float32)
    assert np.abs(coords.numpy() - expected).max() < 0.05
    assert scores.min() > 0.8


def test_heatmap_to_image_matches_original_transform_preds():
    rng = np.random.default_rng(6)
    coords = rng.uniform(0, 47, (3, 5, 2)).astype(np.float32)
    center = rng.uniform(100, 300, (3, 2)).astype(np.float32)
    scale = rng.uniform(0.5, 2, (3, 2)).astype(np.float32)
    ours = UDPHeatmapCodec().heatmap_to_image(torch.from_numpy(coords), torch.from_numpy(center),
                                              torch.from_numpy(scale * 200)).numpy()
    for i in range(3):
        s = scale[i] * 200.0
        ref_x = coords[i, :, 0] * s[0] / (48 - 1.0) + center[i, 0] - s[0] * 0.5
        ref_y = coords[i, :, 1] * s[1] / (64 - 1.0) + center[i, 1] - s[1] * 0.5
        np.testing.assert_allclose(ours[i], np.stack([ref_x, ref_y], -1), rtol=1e-5, atol=1e-3)


def test_flip_back_and_merge_match_original():
    rng = np.random.default_rng(7)
    pairs = [(1, 2), (3, 4)]
    flip_index = [0, 2, 1, 4, 3]
    maps = rng.random((2, 5, 8, 6)).astype(np.float32)
    flipped = rng.random((2, 5, 8, 6)).astype(np.float32)
    back = flip_heatmaps_back(torch.from_numpy(flipped), flip_index).numpy()
    np.testing.assert_array_equal(back, ref_flip_back(flipped, pairs))
    merged = merge_flip_test(torch.from_numpy(maps), torch.from_numpy(flipped), flip_index).numpy()
    np.testing.assert_allclose(merged, (maps + ref_flip_back(flipped, pairs)) * 0.5, rtol=1e-6)
    crops = torch.from_numpy(rng.random((2, 3, 8, 6)).astype(np.float32))
    np.testing.assert_array_equal(flip_images(crops).numpy(), crops.numpy()[..., ::-1])


def test_keypoint_in_image_comes_back_through_crop_heatmap_decode():
    """A blob drawn at a known image position -> UDP crop -> heatmap sampled from the crop -> decode -> image."""
    height, width = 240, 320
    target = np.array([141.3, 97.6])
    boxes = torch.tensor([[90.0, 40.0, 110.0, 150.0], [60.0, 20.0, 160.0, 130.0]])
    center, size = box_to_center_scale(boxes)
    codec = UDPHeatmapCodec()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    for i in range(2):
        # Blob width: 2 heatmap pixels of this box, in image pixels.
        sigma = 2.0 * size[i, 1].item() / 63
        blob = np.exp(-((xs - target[0]) ** 2 + (ys - target[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
        matrix = get_udp_warp_matrix(center[i:i + 1], size[i:i + 1], None, (256, 192))
        crop = warp_affine(torch.from_numpy(blob)[None], matrix, (256, 192))
        # Heatmap pixel j sits on crop pixel j * stride (UDP): sample the crop there.
        stride_y, stride_x = codec.stride
        to_heatmap = torch.tensor([[[1 / stride_x, 0.0, 0.0], [0.0, 1 / stride_y, 0.0]]])
        heatmap = warp_affine(crop[0], to_heatmap, (64, 48))
        keypoints, scores = codec.decode_to_image(heatmap, center[i:i + 1], size[i:i + 1])
        assert np.abs(keypoints[0, 0].numpy() - target).max() < 0.5
        assert scores[0, 0] > 0.9
