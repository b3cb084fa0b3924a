"""The original's heatmap and crop algorithms written out in numpy / OpenCV: the references the codec, the
processor and the data pipeline are checked against (never the code under test)."""

import math

import cv2
import numpy as np


def ref_xywh2cs(box, aspect_ratio=0.75, padding=1.25):
    x, y, w, h = box
    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float32)
    if w > aspect_ratio * h:
        h = w * 1.0 / aspect_ratio
    elif w < aspect_ratio * h:
        w = h * aspect_ratio
    scale = np.array([w / 200.0, h / 200.0], dtype=np.float32) * padding
    return center, scale


def ref_get_warp_matrix(theta, size_input, size_dst, size_target):
    theta = np.deg2rad(theta)
    matrix = np.zeros((2, 3), dtype=np.float32)
    scale_x = size_dst[0] / size_target[0]
    scale_y = size_dst[1] / size_target[1]
    matrix[0, 0] = math.cos(theta) * scale_x
    matrix[0, 1] = -math.sin(theta) * scale_x
    matrix[0, 2] = scale_x * (-0.5 * size_input[0] * math.cos(theta) + 0.5 * size_input[1] * math.sin(theta)
                              + 0.5 * size_target[0])
    matrix[1, 0] = math.sin(theta) * scale_y
    matrix[1, 1] = math.cos(theta) * scale_y
    matrix[1, 2] = scale_y * (-0.5 * size_input[0] * math.sin(theta) - 0.5 * size_input[1] * math.cos(theta)
                              + 0.5 * size_target[1])
    return matrix


def ref_udp_target(joints, visible, image_size, heatmap_size, sigma=2.0):
    """mmpose 0.x TopDownGenerateTarget._udp_generate_target, GaussianHeatmap, one person."""
    num_joints = len(joints)
    image_size, heatmap_size = np.array(image_size), np.array(heatmap_size)
    target_weight = np.ones((num_joints, 1), dtype=np.float32)
    target_weight[:, 0] = visible
    target = np.zeros((num_joints, heatmap_size[1], heatmap_size[0]), dtype=np.float32)
    tmp_size = sigma * 3
    size = 2 * tmp_size + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, None]
    for joint_id in range(num_joints):
        feat_stride = (image_size - 1.0) / (heatmap_size - 1.0)
        mu_x = int(joints[joint_id][0] / feat_stride[0] + 0.5)
        mu_y = int(joints[joint_id][1] / feat_stride[1] + 0.5)
        ul = [int(mu_x - tmp_size), int(mu_y - tmp_size)]
        br = [int(mu_x + tmp_size + 1), int(mu_y + tmp_size + 1)]
        if ul[0] >= heatmap_size[0] or ul[1] >= heatmap_size[1] or br[0] < 0 or br[1] < 0:
            target_weight[joint_id] = 0
            continue
        mu_x_ac = joints[joint_id][0] / feat_stride[0]
        mu_y_ac = joints[joint_id][1] / feat_stride[1]
        x0 = y0 = size // 2
        x0 += mu_x_ac - mu_x
        y0 += mu_y_ac - mu_y
        g = np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2))
        g_x = max(0, -ul[0]), min(br[0], heatmap_size[0]) - ul[0]
        g_y = max(0, -ul[1]), min(br[1], heatmap_size[1]) - ul[1]
        img_x = max(0, ul[0]), min(br[0], heatmap_size[0])
        img_y = max(0, ul[1]), min(br[1], heatmap_size[1])
        if target_weight[joint_id] > 0.5:
            target[joint_id][img_y[0]:img_y[1], img_x[0]:img_x[1]] = g[g_y[0]:g_y[1], g_x[0]:g_x[1]]
    return target, target_weight[:, 0]


def ref_get_max_preds(heatmaps):
    """mmpose 0.x _get_max_preds: integer argmax (x, y) per map, -1 where the maximum is not positive."""
    n, k, _, w = heatmaps.shape
    flat = heatmaps.reshape((n, k, -1))
    idx = np.argmax(flat, 2).reshape((n, k, 1))
    maxvals = np.amax(flat, 2).reshape((n, k, 1))
    preds = np.tile(idx, (1, 1, 2)).astype(np.float32)
    preds[:, :, 0] = preds[:, :, 0] % w
    preds[:, :, 1] = preds[:, :, 1] // w
    preds = np.where(np.tile(maxvals, (1, 1, 2)) > 0.0, preds, -1)
    return preds, maxvals[..., 0]


def ref_decode(heatmaps, kernel=11):
    """mmpose 0.x keypoints_from_heatmaps(use_udp=True): _get_max_preds then post_dark_udp (heatmap pixels)."""
    heatmaps = heatmaps.copy()
    n, k, h, w = heatmaps.shape
    preds, maxvals = ref_get_max_preds(heatmaps)
    maxvals = maxvals[..., None]

    for maps in heatmaps:
        for heatmap in maps:
            cv2.GaussianBlur(heatmap, (kernel, kernel), 0, heatmap)
    np.clip(heatmaps, 0.001, 50, heatmaps)
    np.log(heatmaps, heatmaps)
    pad = np.pad(heatmaps, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge").flatten()
    index = preds[..., 0] + 1 + (preds[..., 1] + 1) * (w + 2)
    index += (w + 2) * (h + 2) * np.arange(0, n * k).reshape(-1, k)
    index = index.astype(int).reshape(-1, 1)
    i_ = pad[index]
    ix1 = pad[index + 1]
    iy1 = pad[index + w + 2]
    ix1y1 = pad[index + w + 3]
    ix1_y1_ = pad[index - w - 3]
    ix1_ = pad[index - 1]
    iy1_ = pad[index - 2 - w]
    dx = 0.5 * (ix1 - ix1_)
    dy = 0.5 * (iy1 - iy1_)
    derivative = np.concatenate([dx, dy], axis=1).reshape(n, k, 2, 1)
    dxx = ix1 - 2 * i_ + ix1_
    dyy = iy1 - 2 * i_ + iy1_
    dxy = 0.5 * (ix1y1 - ix1 - iy1 + i_ + i_ - ix1_ - iy1_ + ix1_y1_)
    hessian = np.concatenate([dxx, dxy, dxy, dyy], axis=1).reshape(n, k, 2, 2)
    hessian = np.linalg.inv(hessian + np.finfo(np.float32).eps * np.eye(2))
    preds -= np.einsum("ijmn,ijnk->ijmk", hessian, derivative).reshape(n, k, 2)
    return preds, maxvals[..., 0]


def ref_flip_back(output_flipped, flip_pairs):
    back = output_flipped.copy()
    for left, right in flip_pairs:
        back[:, left] = output_flipped[:, right]
        back[:, right] = output_flipped[:, left]
    return back[..., ::-1]


def smooth_heatmaps(rng, n, k, h, w):
    """Positive, smooth maps with one or two bumps each, like a trained model's output."""
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    maps = np.zeros((n, k, h, w))
    for bump in range(2):
        cx = rng.uniform(-2, w + 1, (n, k, 1, 1))
        cy = rng.uniform(-2, h + 1, (n, k, 1, 1))
        sx, sy = rng.uniform(1.2, 3.5, (2, n, k, 1, 1))
        amp = rng.uniform(0.2, 1.0, (n, k, 1, 1)) * (1.0 if bump == 0 else 0.6)
        maps += amp * np.exp(-((xs - cx) ** 2) / (2 * sx**2) - (ys - cy) ** 2 / (2 * sy**2))
    maps += rng.normal(0, 0.01, maps.shape)
    return maps.astype(np.float32)


def smooth_image(h, w, channels=3, seed=0):
    """A smooth image in [0, 255], so bilinear interpolation schemes can be compared tightly."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    image = np.zeros((h, w, channels))
    for c in range(channels):
        fx, fy, px, py = rng.uniform(0.01, 0.05, 2).tolist() + rng.uniform(0, 6, 2).tolist()
        image[..., c] = 127.5 + 120 * np.sin(fx * xs + px) * np.cos(fy * ys + py)
    return image.astype(np.float32)


# ----------------------------------------------------------------------------------------------------------------
