"""Per-head encodings against the original ViTPose algorithms (mmpose 0.x), re-written here in numpy / OpenCV.

Heads trained without UDP use the standard crop (`get_affine_transform`), MSRA targets and standard decoding (argmax
plus a quarter-pixel shift, or DARK), with `shift_heatmap` in the flip test.
"""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from support.codec_reference import (
    ref_decode,
    ref_flip_back,
    ref_get_max_preds,
    ref_udp_target,
    ref_xywh2cs,
    smooth_heatmaps,
    smooth_image,
)
from support.models import tiny_config_kwargs
from transformers import pipeline

from vitpose_hf.codec import (
    MSRA_CODEC,
    UDP_CODEC,
    HeadCodec,
    MSRAHeatmapCodec,
    UDPHeatmapCodec,
    build_codec,
    merge_flip_test,
)
from vitpose_hf.configuration_vitpose import (
    VARIANTS,
    VITPOSE_PLUS_DATASETS,
    VitPoseConfig,
)
from vitpose_hf.data import TopDownAugmentation
from vitpose_hf.geometry import box_to_center_scale, get_affine_matrix, warp_affine
from vitpose_hf.image_processing_vitpose import VitPoseImageProcessor
from vitpose_hf.keypoints import get_layout
from vitpose_hf.modeling_vitpose import VitPoseEstimatorOutput, VitPoseModel
from vitpose_hf.pipeline import KeypointDetectionPipeline

LAYOUTS_FILE = Path("/work/shared/keypoint_layouts.json")


# ----------------------------------------------------------------------------------------------------------------
# Independent references: the original release's functions, written out in numpy / cv2.
# ----------------------------------------------------------------------------------------------------------------


def ref_get_affine_transform(center, scale, rot, output_size):
    """mmpose 0.x `get_affine_transform(center, scale, rot, output_size)` (output_size = (w, h), scale in 200 px)."""

    def rotate_point(pt, angle_rad):
        sn, cs = np.sin(angle_rad), np.cos(angle_rad)
        return [pt[0] * cs - pt[1] * sn, pt[0] * sn + pt[1] * cs]

    def third_point(a, b):
        direction = a - b
        return b + np.array([-direction[1], direction[0]], dtype=np.float32)

    scale_tmp = np.asarray(scale) * 200.0
    src_w = scale_tmp[0]
    dst_w, dst_h = output_size
    src_dir = rotate_point([0.0, src_w * -0.5], np.pi * rot / 180)
    dst_dir = np.array([0.0, dst_w * -0.5])
    src = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + np.asarray(src_dir)
    src[2, :] = third_point(src[0, :], src[1, :])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + dst_dir
    dst[2, :] = third_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def ref_msra_target(joints, visible, image_size, heatmap_size, sigma=2.0):
    """mmpose 0.x `TopDownGenerateTarget._msra_generate_target`, GaussianHeatmap, one person (sizes (w, h))."""
    num_joints = len(joints)
    image_size = np.array(image_size)
    W, H = heatmap_size
    target_weight = np.zeros((num_joints, 1), dtype=np.float32)
    target = np.zeros((num_joints, H, W), dtype=np.float32)
    tmp_size = sigma * 3
    for joint_id in range(num_joints):
        target_weight[joint_id] = visible[joint_id]
        feat_stride = image_size / [W, H]
        mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
        mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= W or ul[1] >= H or br[0] < 0 or br[1] < 0:
            target_weight[joint_id] = 0
        if target_weight[joint_id] > 0.5:
            size = 2 * tmp_size + 1
            x = np.arange(0, size, 1, np.float32)
            y = x[:, None]
            x0 = y0 = size // 2
            g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
            g_x = max(0, -ul[0]), min(br[0], W) - ul[0]
            g_y = max(0, -ul[1]), min(br[1], H) - ul[1]
            img_x = max(0, ul[0]), min(br[0], W)
            img_y = max(0, ul[1]), min(br[1], H)
            target[joint_id][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    return target, target_weight[:, 0]


def ref_decode_default(heatmaps):
    """mmpose 0.x `keypoints_from_heatmaps(post_process='default', use_udp=False)` in heatmap pixels."""
    preds, maxvals = ref_get_max_preds(heatmaps)
    n, k, h, w = heatmaps.shape
    for i in range(n):
        for j in range(k):
            heatmap = heatmaps[i][j]
            px, py = int(preds[i][j][0]), int(preds[i][j][1])
            if 1 < px < w - 1 and 1 < py < h - 1:
                diff = np.array([heatmap[py][px + 1] - heatmap[py][px - 1], heatmap[py + 1][px] - heatmap[py - 1][px]])
                preds[i][j] += np.sign(diff) * 0.25
    return preds, maxvals


def ref_decode_dark(heatmaps, kernel=11):
    """mmpose 0.x `keypoints_from_heatmaps(post_process='unbiased', use_udp=False)`: `_gaussian_blur` + `_taylor`."""
    preds, maxvals = ref_get_max_preds(heatmaps)
    heatmaps = heatmaps.copy()
    border = (kernel - 1) // 2
    n, k, h, w = heatmaps.shape
    for i in range(n):
        for j in range(k):
            origin_max = np.max(heatmaps[i, j])
            dr = np.zeros((h + 2 * border, w + 2 * border), dtype=np.float32)
            dr[border:-border, border:-border] = heatmaps[i, j].copy()
            dr = cv2.GaussianBlur(dr, (kernel, kernel), 0)
            heatmaps[i, j] = dr[border:-border, border:-border].copy()
            heatmaps[i, j] *= origin_max / np.max(heatmaps[i, j])
    heatmaps = np.log(np.maximum(heatmaps, 1e-10))
    for i in range(n):
        for j in range(k):
            hm, coord = heatmaps[i][j], preds[i][j]
            px, py = int(coord[0]), int(coord[1])
            if 1 < px < w - 2 and 1 < py < h - 2:
                dx = 0.5 * (hm[py][px + 1] - hm[py][px - 1])
                dy = 0.5 * (hm[py + 1][px] - hm[py - 1][px])
                dxx = 0.25 * (hm[py][px + 2] - 2 * hm[py][px] + hm[py][px - 2])
                dxy = 0.25 * (hm[py + 1][px + 1] - hm[py - 1][px + 1] - hm[py + 1][px - 1] + hm[py - 1][px - 1])
                dyy = 0.25 * (hm[py + 2][px] - 2 * hm[py][px] + hm[py - 2][px])
                if dxx * dyy - dxy**2 != 0:
                    hessian = np.array([[dxx, dxy], [dxy, dyy]])
                    offset = -np.linalg.inv(hessian) @ np.array([[dx], [dy]])
                    preds[i][j] = coord + offset[:, 0]
    return preds, maxvals


def ref_transform_preds(coords, center, scale, output_size, use_udp):
    """mmpose 0.x `transform_preds` (output_size = heatmap (w, h), scale in 200 px)."""
    scale = np.asarray(scale) * 200.0
    if use_udp:
        scale_x, scale_y = scale[0] / (output_size[0] - 1.0), scale[1] / (output_size[1] - 1.0)
    else:
        scale_x, scale_y = scale[0] / output_size[0], scale[1] / output_size[1]
    out = np.ones_like(coords)
    out[:, 0] = coords[:, 0] * scale_x + center[0] - scale[0] * 0.5
    out[:, 1] = coords[:, 1] * scale_y + center[1] - scale[1] * 0.5
    return out


# ----------------------------------------------------------------------------------------------------------------
# Standard crop
# ----------------------------------------------------------------------------------------------------------------


def test_standard_crop_matrix_and_warp_match_get_affine_transform_and_cv2():
    image = smooth_image(150, 200, seed=3)
    boxes = np.array([[30, 20, 60, 90], [-20, -10, 80, 70], [120, 60, 90, 100]], np.float32)
    rotation = np.array([0.0, 25.0, -60.0], np.float32)
    center, size = box_to_center_scale(torch.from_numpy(boxes))
    matrices = get_affine_matrix(center, size, torch.from_numpy(rotation), (64, 48))
    crops = warp_affine(torch.from_numpy(image).permute(2, 0, 1), matrices, (64, 48))
    for i, box in enumerate(boxes):
        c, s = ref_xywh2cs(box)
        ref_matrix = ref_get_affine_transform(c, s, rotation[i], (48, 64))
        np.testing.assert_allclose(matrices[i].numpy(), ref_matrix, rtol=1e-4, atol=1e-3)
        ref = cv2.warpAffine(image, ref_matrix, (48, 64), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        diff = np.abs(crops[i].permute(1, 2, 0).numpy() - ref)
        assert diff.max() < 3.0 and diff.mean() < 0.5, i


def test_processor_crops_each_head_with_its_own_matrix():
    image = np.round(smooth_image(120, 160, seed=5)).astype(np.uint8)
    box = np.array([40.0, 20.0, 50.0, 80.0], np.float32)
    processor = VitPoseImageProcessor(size={"height": 64, "width": 48}, do_normalize=False, do_rescale=False)
    c, s = ref_xywh2cs(box)
    for codec, matrix in ((MSRA_CODEC, ref_get_affine_transform(c, s, 0.0, (48, 64))), (UDP_CODEC, None)):
        crops = processor(image, boxes=[box.tolist()], codec=codec)["pixel_values"][0].permute(1, 2, 0).numpy()
        if matrix is None:  # UDP: box spans pixels 0 .. W-1
            sx, sy = 47.0 / (s[0] * 200), 63.0 / (s[1] * 200)
            matrix = np.array([[sx, 0, -sx * (c[0] - s[0] * 100)], [0, sy, -sy * (c[1] - s[1] * 100)]])
        ref = cv2.warpAffine(image, matrix, (48, 64), flags=cv2.INTER_LINEAR).astype(np.float32)
        assert np.abs(crops - ref).mean() < 0.6 and np.abs(crops - ref).max() < 3.0


# ----------------------------------------------------------------------------------------------------------------
# Targets in float64, bit for bit
# ----------------------------------------------------------------------------------------------------------------


def test_msra_targets_bit_exact():
    rng = np.random.default_rng(0)
    joints = rng.uniform(-40, 230, (3, 17, 2)).astype(np.float32)
    # Rounding corners: exact halves, joints just inside / outside the +-3 sigma reach of the map.
    joints[0, :8] = [[2.0, 6.0], [-2.0, -2.1], [-26.1, 10.0], [-30.0, 10.0], [-34.0, 10.0], [190.0, 254.0],
                     [215.9, 100.0], [10.0, 277.99]]
    visible = (rng.random((3, 17)) > 0.2).astype(np.float32)
    visible[0, :8] = 1
    heatmaps, weights = MSRAHeatmapCodec((256, 192), (64, 48)).encode(torch.from_numpy(joints), torch.from_numpy(visible))
    for n in range(3):
        ref, ref_weight = ref_msra_target(joints[n], visible[n], (192, 256), (48, 64))
        np.testing.assert_array_equal(heatmaps[n].numpy(), ref)
        np.testing.assert_array_equal(weights[n].numpy(), ref_weight)
    assert weights[0, :8].tolist() == [1, 1, 1, 1, 0, 1, 0, 1]


def test_udp_targets_float64_at_the_rounding_corners():
    codec = UDPHeatmapCodec((256, 192), (64, 48))
    # x / (191 / 47) + 0.5 lands within a float32 step of an integer: float32 arithmetic rounds these the other way.
    stride32 = np.float32(191 / 47)
    assert int(np.float32(6.0957446) / stride32 + np.float32(0.5)) == 2  # float32: columns 0-8
    assert int(np.float32(-34.542553) / stride32 + np.float32(0.5)) == -8  # float32: window ends before 0
    joints = np.array([[[6.0957446, 100.0], [-34.542553, 100.0], [50.0, 60.0]]], np.float32)
    heatmaps, weights = codec.encode(torch.from_numpy(joints), torch.ones(1, 3))
    ref, ref_weight = ref_udp_target(joints[0], np.ones(3), (192, 256), (48, 64))
    np.testing.assert_array_equal(weights[0].numpy(), ref_weight)
    np.testing.assert_array_equal(heatmaps[0].numpy() > 0, ref > 0)
    np.testing.assert_allclose(heatmaps[0].numpy(), ref, rtol=0, atol=1e-7)
    columns = np.flatnonzero(heatmaps[0, 0].sum(0).numpy() > 0)
    assert (columns.min(), columns.max()) == (0, 7)
    assert weights[0, 1] == 1


# ----------------------------------------------------------------------------------------------------------------
# Standard decoding, DARK and the flip test
# ----------------------------------------------------------------------------------------------------------------


def test_standard_decoding_quarter_shift_matches_original():
    rng = np.random.default_rng(1)
    maps = smooth_heatmaps(rng, 5, 17, 64, 48)
    maps[0, 0] = -1.0  # no positive maximum: -1
    maps[0, 1, :, :] = 0.0
    maps[0, 1, 1, 10] = 1.0  # argmax on row 1: no shift
    maps[0, 2, :, :] = 0.0
    maps[0, 2, 20, 20] = 1.0  # equal neighbours: no shift
    coords, scores = MSRAHeatmapCodec((256, 192), (64, 48)).decode(torch.from_numpy(maps))
    ref_coords, ref_scores = ref_decode_default(maps)
    np.testing.assert_array_equal(coords.numpy(), ref_coords)
    np.testing.assert_array_equal(scores.numpy(), ref_scores)


def test_standard_dark_decoding_matches_original():
    rng = np.random.default_rng(2)
    maps = smooth_heatmaps(rng, 5, 17, 64, 48)
    codec = build_codec(HeadCodec(udp=False, post_process="dark"), (256, 192), (64, 48))
    coords, scores = codec.decode(torch.from_numpy(maps))
    ref_coords, ref_scores = ref_decode_dark(maps)
    np.testing.assert_array_equal(scores.numpy(), ref_scores)
    assert np.abs(coords.numpy() - ref_coords).max() < 2e-3


def test_flip_test_with_shift_heatmap_matches_original():
    rng = np.random.default_rng(3)
    pairs = [(1, 2), (3, 4)]
    flip_index = [0, 2, 1, 4, 3]
    maps, flipped = rng.random((2, 2, 5, 8, 6)).astype(np.float32)
    back = ref_flip_back(flipped, pairs).copy()
    back[:, :, :, 1:] = back[:, :, :, :-1]  # the original's shift_heatmap
    merged = merge_flip_test(torch.from_numpy(maps), torch.from_numpy(flipped), flip_index, shift_heatmap=True)
    np.testing.assert_allclose(merged.numpy(), (maps + back) * 0.5, rtol=1e-6)
    processor = VitPoseImageProcessor()
    ours = processor.merge_flipped_heatmaps(torch.from_numpy(maps), torch.from_numpy(flipped), flip_index, MSRA_CODEC)
    np.testing.assert_allclose(ours.numpy(), (maps + back) * 0.5, rtol=1e-6)


# ----------------------------------------------------------------------------------------------------------------
# Per-head settings of every released variant, end to end through the processor
# ----------------------------------------------------------------------------------------------------------------

EXPECTED_UDP = {"coco": True, "mpii": True, "aic": False, "ap10k": False, "apt36k": False, "wholebody": False}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_variant_sets_each_heads_codec(variant):
    config = VitPoseConfig.from_variant(variant)
    for head in config.head_names:
        codec = config.head_codec(head)
        assert codec.udp == EXPECTED_UDP[head], head
        assert codec.shift_heatmap == (not codec.udp) and codec.post_process == ("dark" if codec.udp else "default")
        assert codec.sigma == 2.0 and codec.target_type == "GaussianHeatmap"


def test_head_codecs_follow_head_names_and_reject_bad_values():
    config = VitPoseConfig.from_variant("vitpose-plus-small", keypoint_heads=["aic", "coco", "crowdpose"])
    assert [config.head_codec(i).udp for i in range(3)] == [False, True, True]
    # A config cut down to one head (as when one dataset's expert is split out) keeps that head's codec.
    single = VitPoseConfig.from_dict({**config.to_dict(), "keypoint_heads": [config.keypoint_heads[0]]})
    assert single.head_codec("aic") == MSRA_CODEC and list(single.head_codecs) == ["aic"]
    with pytest.raises(TypeError, match="head_codecs must map head names"):
        VitPoseConfig(keypoint_heads=["coco", "aic"], head_codecs=[UDP_CODEC.to_dict()])
    with pytest.raises(ValueError, match="post_process"):
        HeadCodec(udp=True, post_process="default")
    with pytest.raises(ValueError, match="Unknown head codec keys"):
        HeadCodec.from_dict({"udp": True, "kernel": 3})


def _original_decode(heatmaps, codec, center, scale):
    """The original's decoding of one head's heatmaps to image pixels (per its config)."""
    if codec.udp:
        coords, scores = ref_decode(heatmaps)
    else:
        coords, scores = ref_decode_default(heatmaps)
    w, h = heatmaps.shape[-1], heatmaps.shape[-2]
    image = np.stack([ref_transform_preds(coords[i], center[i], scale[i], (w, h), codec.udp)
                      for i in range(len(coords))])
    return image, scores


def test_vitpose_plus_heads_decode_as_the_original():
    config = VitPoseConfig.from_variant("vitpose-plus-small")
    processor = VitPoseImageProcessor.from_model_config(config)
    rng = np.random.default_rng(4)
    boxes = np.array([[30.0, 40.0, 90.0, 150.0], [200.0, 10.0, 60.0, 60.0]], np.float32)
    for head in VITPOSE_PLUS_DATASETS:
        codec, layout = config.head_codec(head), get_layout(head)
        k = layout.num_keypoints
        joints = np.stack([rng.uniform(5, 187, (2, k)), rng.uniform(5, 251, (2, k))], -1).astype(np.float32)
        render = ref_udp_target if codec.udp else ref_msra_target
        maps = np.stack([render(joints[i], np.ones(k), (192, 256), (48, 64))[0] for i in range(2)])
        maps += rng.uniform(0, 0.02, maps.shape).astype(np.float32)  # break exact ties of the ideal maps
        people = processor.post_process_pose_estimation(torch.from_numpy(maps), boxes=[boxes.tolist()],
                                                        codec=config.head_codec(head).to_dict())[0]
        centers, scales = zip(*(ref_xywh2cs(box) for box in boxes))
        expected, scores = _original_decode(maps, codec, centers, scales)
        for i, person in enumerate(people):
            np.testing.assert_allclose(person["keypoints"].numpy(), expected[i], rtol=0, atol=2e-2, err_msg=head)
            np.testing.assert_array_equal(person["scores"].numpy(), scores[i])


# ----------------------------------------------------------------------------------------------------------------
# Training data per head, and the layouts
# ----------------------------------------------------------------------------------------------------------------

NO_AUGMENTATION = {"flip_prob": 0.0, "half_body_prob": 0.0, "center_jitter_prob": 0.0, "scale_factor": 0.0,
                   "rotation_prob": 0.0}


def test_training_targets_use_the_heads_encoding():
    image = np.round(smooth_image(200, 180, seed=6)).astype(np.uint8)
    rng = np.random.default_rng(5)
    box = [40.0, 30.0, 80.0, 140.0]
    joints = np.concatenate([rng.uniform([40, 30], [120, 170], (14, 2)), np.full((14, 1), 2.0)], 1)
    sample = {"keypoints": joints.reshape(-1).tolist(), "bbox": box}
    aug = TopDownAugmentation("aic", codec=MSRA_CODEC, **NO_AUGMENTATION)
    out = aug(sample, image=image)
    c, s = ref_xywh2cs(np.array(box, np.float32))
    matrix = ref_get_affine_transform(c, s, 0.0, (192, 256))
    moved = np.float32(joints[:, :2] @ matrix[:, :2].T + matrix[:, 2])
    ref, ref_weight = ref_msra_target(moved, np.ones(14), (192, 256), (48, 64))
    np.testing.assert_allclose(out["keypoints"][:, :2].numpy(), moved, atol=2e-3)
    assert (out["labels"].numpy() > 0).sum() > 0
    # A float32 step in the matrix may move a joint that lies on a rounding edge; elsewhere the targets are exact.
    same = [j for j in range(14) if np.array_equal(out["labels"][j].numpy(), ref[j])]
    assert len(same) >= 13
    np.testing.assert_array_equal(out["target_weight"].numpy(), ref_weight)


def test_layouts_carry_the_originals_sigmas_and_body_split():
    reference = json.loads(LAYOUTS_FILE.read_text()) if LAYOUTS_FILE.is_file() else None
    aic, wholebody = get_layout("aic"), get_layout("wholebody")
    assert aic.oks_sigmas[:3] == (0.01388152, 0.01515228, 0.01057665)
    assert len(wholebody.oks_sigmas) == 133 and wholebody.oks_sigmas[17:20] == (0.068, 0.066, 0.066)
    assert wholebody.upper_body_ids == tuple(range(11))  # face and hands count as lower body
    assert 10 not in get_layout("ap10k").upper_body_ids  # R_F_Paw is lower body
    assert get_layout("mpii").half_body is False and get_layout("coco").half_body is True
    if reference is not None:
        for name in ("coco", "mpii", "aic", "crowdpose", "ap10k", "wholebody"):
            layout = get_layout(name)
            assert list(layout.oks_sigmas) == reference[name]["oks_sigmas"], name
            assert list(layout.upper_body_ids) == reference[name]["upper_body_ids"], name


def test_mpii_has_no_half_body_step():
    joints = np.concatenate([np.random.default_rng(6).uniform(50, 150, (17, 2)), np.ones((17, 1))], 1)
    for layout, expected in (("mpii", False), ("coco", True)):
        k = get_layout(layout).num_keypoints
        aug = TopDownAugmentation(layout, half_body_prob=1.0, seed=0)
        drawn = [aug.sample_params(joints[:k], [40, 40, 120, 120], 300, aug.rng_for(0, i)).half_body for i in range(20)]
        assert any(drawn) is expected, layout


# ----------------------------------------------------------------------------------------------------------------
# The pipeline crops, flips and decodes each head of a ViTPose+ model with that head's codec
# ----------------------------------------------------------------------------------------------------------------


class SpotModel(VitPoseModel):
    """A stand-in ViTPose whose heatmaps peak where its crop is brightest, in the geometry its head was trained
    with: heatmap pixel u sits on crop pixel u * (W - 1) / (w - 1) with UDP, on u * W / w otherwise."""

    def forward(self, pixel_values, dataset_index=None, **kwargs):
        index = int(self.resolve_dataset_index(dataset_index, pixel_values.shape[0], pixel_values.device)[0])
        udp = self.config.head_codec(index).udp
        num_keypoints = self.config.layouts[index].num_keypoints
        height, width = pixel_values.shape[-2:]
        rows, cols = self.config.heatmap_size
        brightness = F.avg_pool2d(pixel_values.mean(1, keepdim=True), 5, stride=1, padding=2, count_include_pad=False)
        if udp:
            maps = F.interpolate(brightness, size=(rows, cols), mode="bilinear", align_corners=True)
        else:
            xs = (2 * torch.arange(cols) * (width / cols) + 1) / width - 1
            ys = (2 * torch.arange(rows) * (height / rows) + 1) / height - 1
            grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).expand(len(pixel_values), -1, -1, -1)
            maps = F.grid_sample(brightness, grid.to(brightness.dtype), mode="bilinear", align_corners=False)
        maps = torch.exp(2.0 * (maps - maps.amax(dim=(2, 3), keepdim=True)))
        return VitPoseEstimatorOutput(heatmaps=maps.expand(-1, num_keypoints, -1, -1).contiguous())


def test_pipeline_decodes_every_vitpose_plus_head_with_its_codec():
    config = VitPoseConfig.from_variant("vitpose-plus-small", **tiny_config_kwargs(part_features=8))
    model = SpotModel(config).eval()
    pose = pipeline("keypoint-detection", model=model, image_processor=VitPoseImageProcessor.from_model_config(config),
                    pipeline_class=KeypointDetectionPipeline, device="cpu")
    height, width = 200, 240
    y, x = np.mgrid[0:height, 0:width]
    rng = np.random.default_rng(7)
    for spot in rng.uniform([80, 60], [130, 140], (3, 2)):
        blob = np.exp(-((x - spot[0]) ** 2 + (y - spot[1]) ** 2) / (2 * 6.0**2))
        image = Image.fromarray((blob * 255).round().astype(np.uint8)).convert("RGB")
        # A heatmap pixel is about 2.7 image pixels here; the standard decoding is good to about a quarter of one.
        for head, tolerance in (("coco", 0.05), ("aic", 1.0), ("wholebody", 1.0)):
            people = pose(image, boxes=[[60.0, 30.0, 90.0, 140.0]], dataset=head, flip_test=True)
            assert np.abs(np.asarray(people[0]["keypoints"]) - spot).max() < tolerance, head
