"""Heatmap maths shared by training and inference: UDP crops, UDP Gaussian targets and DARK-UDP decoding.

Everything here is batched torch (CPU or GPU) and follows the original ViTPose release (mmpose 0.x with
`use_udp=True`) so that converted checkpoints score what the paper reports:

- a person box becomes a crop box of `size` image pixels around `center` (the original's `scale * 200`);
- the crop is an affine warp with the UDP matrix: `x_crop = (W_crop - 1) / size_w * (x - center_x + size_w / 2)`;
- training targets are unnormalised Gaussians (sigma 2) at `joint / stride`, `stride = (input - 1) / (heatmap - 1)`;
- decoding takes the argmax, refines it with one Newton step on the log of the blurred heatmap and maps it back.

Shapes: N crops (persons), K keypoints, sizes given as (width, height) like mmpose.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor


def box_to_center_scale(
    boxes: Tensor, box_format: str = "xywh", aspect_ratio: float = 0.75, padding: float = 1.25
) -> tuple[Tensor, Tensor]:
    """Person boxes (N, 4) -> crop `center` (N, 2) and crop `size` (N, 2) in image pixels.

    The box is widened (or heightened) to `aspect_ratio` = width / height and then enlarged by `padding`, as the
    original's `_xywh2cs` does; `size` is its `scale * 200`.
    """
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"Boxes must have shape (N, 4), got {tuple(boxes.shape)}.")
    if box_format == "xywh":
        x, y, w, h = boxes.unbind(-1)
    elif box_format == "xyxy":
        x, y, x2, y2 = boxes.unbind(-1)
        w, h = x2 - x, y2 - y
    else:
        raise ValueError(f"box_format must be 'xywh' or 'xyxy', got {box_format!r}.")
    center = torch.stack([x + 0.5 * w, y + 0.5 * h], dim=-1)
    wider = w > aspect_ratio * h
    new_w = torch.where(wider, w, h * aspect_ratio)
    new_h = torch.where(wider, w / aspect_ratio, h)
    size = torch.stack([new_w, new_h], dim=-1) * padding
    return center, size


def get_udp_warp_matrix(
    center: Tensor, size: Tensor, rotation: Tensor | None, output_size: tuple[int, int]
) -> Tensor:
    """Affine matrices (N, 2, 3) mapping image pixels to crop pixels (UDP, mmpose's `get_warp_matrix`).

    `rotation` (N,) in degrees, or None: the crop box turns counter-clockwise about its centre in the image (y down),
    so the content appears turned clockwise in the crop. `output_size` is (width, height) of the crop. The box of
    `size` pixels spans crop pixels 0 .. W-1 exactly.
    """
    center = torch.as_tensor(center, dtype=torch.float32)
    size = torch.as_tensor(size, dtype=center.dtype, device=center.device)
    if rotation is None:
        rotation = torch.zeros(center.shape[:-1], dtype=center.dtype, device=center.device)
    theta = torch.deg2rad(torch.as_tensor(rotation, dtype=center.dtype, device=center.device))
    cos, sin = torch.cos(theta), torch.sin(theta)
    scale_x = (output_size[0] - 1.0) / size[..., 0]
    scale_y = (output_size[1] - 1.0) / size[..., 1]
    cx, cy = center[..., 0], center[..., 1]
    row_x = torch.stack(
        [cos * scale_x, -sin * scale_x, scale_x * (-cx * cos + cy * sin + 0.5 * size[..., 0])], dim=-1
    )
    row_y = torch.stack(
        [sin * scale_y, cos * scale_y, scale_y * (-cx * sin - cy * cos + 0.5 * size[..., 1])], dim=-1
    )
    return torch.stack([row_x, row_y], dim=-2)


def invert_affine(matrices: Tensor) -> Tensor:
    """Inverse of affine matrices (..., 2, 3), e.g. crop pixels -> image pixels."""
    a, b, tx = matrices[..., 0, 0], matrices[..., 0, 1], matrices[..., 0, 2]
    c, d, ty = matrices[..., 1, 0], matrices[..., 1, 1], matrices[..., 1, 2]
    det = a * d - b * c
    ia, ib, ic, id_ = d / det, -b / det, -c / det, a / det
    itx = -(ia * tx + ib * ty)
    ity = -(ic * tx + id_ * ty)
    return torch.stack([torch.stack([ia, ib, itx], -1), torch.stack([ic, id_, ity], -1)], -2)


_AFFINE_ROW = torch.tensor([[[0.0, 0.0, 1.0]]], dtype=torch.float64)


def transform_points(points: Tensor, matrices: Tensor) -> Tensor:
    """Apply affine matrices (..., 2, 3) to points (..., K, 2)."""
    return points @ matrices[..., :2].transpose(-1, -2) + matrices[..., None, :, 2]


# Memory for the sampling grid and samples of one grid_sample call on CPU (about 4 crops of 256x192). Small chunks
# stay in cache and below malloc's mmap threshold, so their memory is reused instead of page-faulted in again: with
# 100 boxes this is 1.5-2x faster than one call.
_CPU_CHUNK_BYTES = 4 * 2**20


def _affine_grid(theta: Tensor, height: int, width: int) -> Tensor:
    """`F.affine_grid(theta, (N, C, height, width), align_corners=False)` as one broadcast add (3x faster on CPU)."""
    xs = (torch.arange(width, dtype=theta.dtype, device=theta.device) * 2 + 1) / width - 1
    ys = (torch.arange(height, dtype=theta.dtype, device=theta.device) * 2 + 1) / height - 1
    per_column = xs[None, None, :, None] * theta[:, None, None, :, 0]  # (N, 1, W, 2)
    per_row = ys[None, :, None, None] * theta[:, None, None, :, 1] + theta[:, None, None, :, 2]  # (N, H, 1, 2)
    return per_row + per_column


def warp_affine(
    images: Tensor | Sequence[Tensor],
    matrices: Tensor,
    output_size: tuple[int, int],
    image_index: Tensor | Sequence[int] | None = None,
    border_value: float | Sequence[float] | Tensor = 0.0,
    scale: float | Sequence[float] | Tensor = 1.0,
    shift: float | Sequence[float] | Tensor = 0.0,
) -> Tensor:
    """Batched bilinear warp with a constant border, like `cv2.warpAffine(INTER_LINEAR, BORDER_CONSTANT)`.

    Args:
        images: (B, C, H, W) tensor or a list of (C, H, W) tensors (sizes may differ). Integer images are sampled
            as float values of the same range.
        matrices: (N, 2, 3) image -> crop matrices (as given to cv2).
        output_size: (width, height) of the crops.
        image_index: (N,) index of the image each crop comes from. Defaults to crop i <- image i, or to image 0
            for every crop when there is a single image.
        border_value: value outside the image, a scalar or one per channel (cv2's `borderValue`).
        scale, shift: pixel values become `value * scale + shift` (scalars or one per channel) as the image is
            copied for sampling, so rescaling and normalising cost nothing extra. `border_value` is not transformed.

    Returns:
        (N, C, height, width) float crops. The crops of one image are sampled from an expanded view of it, so 100
        boxes never copy the image 100 times.
    """
    if isinstance(images, Tensor) and images.ndim == 4:
        images = list(images.unbind(0))
    elif isinstance(images, Tensor):
        images = [images]
    matrices = torch.as_tensor(matrices)
    num_crops = matrices.shape[0]
    if image_index is None:
        if len(images) not in (1, num_crops):
            raise ValueError(f"Got {len(images)} images for {num_crops} crops: pass image_index.")
        image_index = [0] * num_crops if len(images) == 1 else list(range(num_crops))
    image_index = torch.as_tensor(image_index, dtype=torch.long).cpu()
    if image_index.shape != (num_crops,):
        raise ValueError(f"image_index must have shape ({num_crops},), got {tuple(image_index.shape)}.")
    width, height = int(output_size[0]), int(output_size[1])
    channels = images[0].shape[0] if images else 3
    device = images[0].device if images else matrices.device
    dtype = images[0].dtype if images and images[0].is_floating_point() else torch.float32
    groups = torch.unique(image_index).tolist()
    bytes_per_crop = (channels + 2) * height * width * torch.finfo(dtype).bits // 8
    chunk = max(1, _CPU_CHUNK_BYTES // bytes_per_crop) if device.type == "cpu" else max(num_crops, 1)
    if num_crops == 0:
        return torch.empty(0, channels, height, width, dtype=dtype, device=device)
    single_call = len(groups) == 1 and num_crops <= chunk
    out = None if single_call else torch.empty(num_crops, channels, height, width, dtype=dtype, device=device)

    # Crop pixel -> image pixel, then to grid_sample's normalised coordinates of the image framed by one pixel of
    # border value (align_corners=False: -1 and 1 are the outer edges of the frame, pixel i's centre sits at i + 1).
    # With padding_mode="border", samples beyond the image blend into and then stay at the border value: cv2's
    # BORDER_CONSTANT.
    # (The small matrices are composed on CPU in float64, which not every accelerator has.)
    inverse = invert_affine(matrices.detach().to("cpu", torch.float64))
    inverse = torch.cat([inverse, _AFFINE_ROW.expand(num_crops, 1, 3)], dim=1)
    unnormalise_crop = torch.tensor(
        [[width / 2, 0, (width - 1) / 2], [0, height / 2, (height - 1) / 2], [0, 0, 1]], dtype=torch.float64
    )
    border = torch.as_tensor(border_value, dtype=dtype, device=device).reshape(-1, 1, 1).expand(channels, 1, 1)
    scale = torch.as_tensor(scale, dtype=dtype, device=device).reshape(-1, 1, 1).expand(channels, 1, 1)
    shift = torch.as_tensor(shift, dtype=dtype, device=device).reshape(-1, 1, 1).expand(channels, 1, 1)
    identity = bool((scale == 1).all() and (shift == 0).all())
    crop_corners = torch.tensor([[0.0, 0.0], [width - 1, 0.0], [0.0, height - 1], [width - 1, height - 1]], dtype=torch.float64)
    for i in groups:
        image = images[i]
        if image.ndim != 3 or image.shape[0] != channels:
            raise ValueError(f"Image {i} has shape {tuple(image.shape)}, expected ({channels}, H, W).")
        rows = (image_index == i).nonzero().squeeze(1)
        # Only the part of the image that the crops sample (with a pixel to spare) is converted and framed.
        corners = transform_points(crop_corners, inverse[rows, :2]).reshape(-1, 2)
        low = (corners.amin(0).floor() - 1).tolist()
        high = (corners.amax(0).floor() + 3).tolist()
        x0, x1 = (int(min(max(v, 0), image.shape[2])) for v in (low[0], high[0]))
        y0, y1 = (int(min(max(v, 0), image.shape[1])) for v in (low[1], high[1]))
        region = image[:, y0:max(y0, y1), x0:max(x0, x1)]
        img_h, img_w = region.shape[-2:]
        framed = torch.empty(channels, img_h + 2, img_w + 2, dtype=dtype, device=device)
        if identity:
            framed[:, 1:-1, 1:-1] = region
        else:
            torch.addcmul(shift, region, scale, out=framed[:, 1:-1, 1:-1])
        for edge in (framed[:, :1], framed[:, -1:], framed[:, :, :1], framed[:, :, -1:]):
            edge.copy_(border.expand_as(edge))
        normalise_image = torch.tensor(
            [[2 / (img_w + 2), 0, (3 - 2 * x0) / (img_w + 2) - 1], [0, 2 / (img_h + 2), (3 - 2 * y0) / (img_h + 2) - 1]],
            dtype=torch.float64,
        )
        theta = (normalise_image @ inverse[rows] @ unnormalise_crop).to(device, dtype)
        for start in range(0, len(rows), chunk):
            part = rows[start:start + chunk]
            sampled = F.grid_sample(
                framed.unsqueeze(0).expand(len(part), -1, -1, -1),
                _affine_grid(theta[start:start + chunk], height, width),
                mode="bilinear",
                padding_mode="border",
                align_corners=False,
            )
            if single_call:
                return sampled
            first = int(part[0])
            if int(part[-1]) - first + 1 == len(part):  # consecutive crops (the usual order)
                out[first:first + len(part)] = sampled
            else:
                out.index_copy_(0, part.to(device), sampled)
    return out


def flip_images(pixel_values: Tensor) -> Tensor:
    """Mirror crops (..., H, W) left-right for the flip test."""
    return pixel_values.flip(-1)


def flip_heatmaps_back(flipped_heatmaps: Tensor, flip_index: Sequence[int]) -> Tensor:
    """Heatmaps predicted on mirrored crops -> heatmaps of the original crops.

    Mirrors W and swaps left/right channels (`flip_index[k]` is the mirror keypoint of k). No one-pixel shift: with
    UDP the mirrored crop is exactly aligned (ViTPose's test_cfg sets `shift_heatmap=False`).
    """
    flip_index = torch.as_tensor(list(flip_index), dtype=torch.long, device=flipped_heatmaps.device)
    if flip_index.numel() != flipped_heatmaps.shape[-3]:
        raise ValueError(f"flip_index has {flip_index.numel()} entries for {flipped_heatmaps.shape[-3]} heatmaps.")
    return flipped_heatmaps.index_select(-3, flip_index).flip(-1)


def merge_flip_test(heatmaps: Tensor, flipped_heatmaps: Tensor, flip_index: Sequence[int]) -> Tensor:
    """Average the heatmaps of the crops with those of the mirrored crops (flipped back)."""
    return 0.5 * (heatmaps + flip_heatmaps_back(flipped_heatmaps, flip_index))


def _reflect101_index(index: Tensor, length: int) -> Tensor:
    """Fold indices into [0, length) the way OpenCV's default border does (reflect-101: ... 2 1 | 0 1 2 ... | n-2 ...)."""
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = index.remainder(period)
    return torch.where(index >= length, period - index, index)


def gaussian_blur_matrix(
    length: int, kernel_size: int = 11, sigma: float = 0.0, device: torch.device | str | None = None
) -> Tensor:
    """(length, length) matrix B with `B @ v` = OpenCV's 1-D Gaussian blur of v, reflect-101 border included.

    `sigma <= 0` takes OpenCV's default `0.3 * ((k - 1) * 0.5 - 1) + 0.8` (2.0 for k = 11). The 2-D blur of a map X
    is `B_h @ X @ B_w.T`; as a matrix, the blur can also be evaluated at just a few pixels (see `decode`).
    """
    if kernel_size % 2 != 1 or kernel_size < 1:
        raise ValueError(f"kernel_size must be a positive odd number, got {kernel_size}.")
    if sigma <= 0:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    radius = kernel_size // 2
    offsets = torch.arange(-radius, radius + 1)
    weights = torch.exp(-(offsets.to(torch.float64) ** 2) / (2 * sigma**2))
    weights = weights / weights.sum()
    rows = torch.arange(length)[:, None].expand(length, kernel_size)
    cols = _reflect101_index(rows + offsets, length)
    matrix = torch.zeros(length, length, dtype=torch.float64)
    matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), weights.repeat(length), accumulate=True)
    return matrix.to(device=device, dtype=torch.float32)


def gaussian_blur(heatmaps: Tensor, kernel_size: int = 11, sigma: float = 0.0) -> Tensor:
    """`cv2.GaussianBlur(h, (k, k), sigma)` of every (H, W) map of a (..., H, W) tensor (reflect-101 border)."""
    height, width = heatmaps.shape[-2:]
    rows = gaussian_blur_matrix(height, kernel_size, sigma, heatmaps.device).to(heatmaps.dtype)
    cols = gaussian_blur_matrix(width, kernel_size, sigma, heatmaps.device).to(heatmaps.dtype)
    return rows @ heatmaps @ cols.T


class UDPHeatmapCodec:
    """UDP Gaussian heatmaps: `encode` makes training targets, `decode` turns predictions into keypoints.

    Args:
        input_size: (width, height) of the model input crop.
        heatmap_size: (width, height) of the predicted heatmaps.
        sigma: standard deviation of the target Gaussians, in heatmap pixels.
        blur_kernel_size: kernel of the Gaussian blur before the DARK refinement (ViTPose's `modulate_kernel`).
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        heatmap_size: tuple[int, int] = (48, 64),
        sigma: float = 2.0,
        blur_kernel_size: int = 11,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.sigma = float(sigma)
        self.blur_kernel_size = int(blur_kernel_size)
        if min(self.heatmap_size) < 2 or min(self.input_size) < 2:
            raise ValueError(f"input_size {input_size} and heatmap_size {heatmap_size} must be at least 2 pixels.")

    @property
    def stride(self) -> tuple[float, float]:
        """Input pixels per heatmap pixel, UDP style: (input - 1) / (heatmap - 1)."""
        return tuple((i - 1.0) / (h - 1.0) for i, h in zip(self.input_size, self.heatmap_size))

    def encode(self, keypoints: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
        """Keypoints (N, K, 2) in input-crop pixels and visibility (N, K) -> heatmaps (N, K, h, w), weights (N, K).

        Follows mmpose 0.x `_udp_generate_target`: the Gaussian is cut to a square of +-3 sigma around the rounded
        joint, and the weight is 0 for invisible joints (visibility <= 0) and for joints whose square lies entirely
        outside the heatmap.
        """
        keypoints = torch.as_tensor(keypoints, dtype=torch.float32)
        visible = torch.as_tensor(visible, device=keypoints.device)
        width, height = self.heatmap_size
        stride = torch.tensor(self.stride, dtype=torch.float32, device=keypoints.device)
        radius = 3 * self.sigma
        window = 2 * radius + 1

        mu_exact = keypoints / stride
        mu = torch.trunc(mu_exact + 0.5)  # the original's int(): rounds towards zero
        upper_left = torch.trunc(mu - radius)
        bottom_right = torch.trunc(mu + radius + 1)
        limits = torch.tensor([width, height], dtype=torch.float32, device=keypoints.device)
        outside = ((upper_left >= limits) | (bottom_right < 0)).any(-1)
        weights = ((visible > 0) & ~outside).to(torch.float32)

        # Gaussian centre in heatmap pixels, exactly where the original's window puts it.
        centre = upper_left + math.floor(window / 2) + (mu_exact - mu)
        xs = torch.arange(width, dtype=torch.float32, device=keypoints.device)
        ys = torch.arange(height, dtype=torch.float32, device=keypoints.device)
        gx = torch.exp(-((xs - centre[..., 0:1]) ** 2) / (2 * self.sigma**2))
        gy = torch.exp(-((ys - centre[..., 1:2]) ** 2) / (2 * self.sigma**2))
        gx = gx * ((xs >= upper_left[..., 0:1]) & (xs < bottom_right[..., 0:1]))
        gy = gy * ((ys >= upper_left[..., 1:2]) & (ys < bottom_right[..., 1:2]))
        heatmaps = gy[..., :, None] * gx[..., None, :] * (weights > 0.5)[..., None, None]
        return heatmaps, weights

    def decode(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """Heatmaps (N, K, h, w) -> keypoints (N, K, 2) in heatmap pixels and scores (N, K).

        As mmpose 0.x `keypoints_from_heatmaps(use_udp=True, kernel=11)`: integer argmax (first maximum wins),
        score = raw maximum, then one Newton step on the log of the blurred heatmap (`post_dark_udp`). Where the
        maximum is <= 0 the location stays at -1 (the original still "refines" those with out-of-range reads).
        """
        heatmaps = torch.as_tensor(heatmaps)
        if heatmaps.ndim != 4:
            raise ValueError(f"Heatmaps must have shape (N, K, H, W), got {tuple(heatmaps.shape)}.")
        heatmaps = heatmaps.detach().to(torch.float32)
        num, joints, height, width = heatmaps.shape
        scores, index = heatmaps.reshape(num, joints, height * width).max(dim=-1)
        x = index % width
        y = torch.div(index, width, rounding_mode="floor")
        if num * joints == 0:
            return torch.zeros(num, joints, 2, device=heatmaps.device), scores

        # The blurred log-heatmap is only needed on the 3x3 pixels around each maximum: gather those rows and
        # columns of the blur matrices instead of blurring whole maps. Clamping the indices is the original's
        # edge padding.
        steps = torch.arange(-1, 2, device=heatmaps.device)
        near_y = (y.unsqueeze(-1) + steps).clamp(0, height - 1)
        near_x = (x.unsqueeze(-1) + steps).clamp(0, width - 1)
        blur_rows = gaussian_blur_matrix(height, self.blur_kernel_size, device=heatmaps.device)[near_y]
        blur_cols = gaussian_blur_matrix(width, self.blur_kernel_size, device=heatmaps.device)[near_x]
        near = (blur_rows @ heatmaps @ blur_cols.transpose(-1, -2)).clamp(0.001, 50).log()
        # The original solves the 2x2 system in float64 (MPS has no float64).
        near = near.to(torch.float32 if near.device.type == "mps" else torch.float64)
        centre, right, left = near[..., 1, 1], near[..., 1, 2], near[..., 1, 0]
        bottom, top = near[..., 2, 1], near[..., 0, 1]
        bottom_right, top_left = near[..., 2, 2], near[..., 0, 0]
        dx = 0.5 * (right - left)
        dy = 0.5 * (bottom - top)
        dxx = right - 2 * centre + left
        dyy = bottom - 2 * centre + top
        dxy = 0.5 * (bottom_right - right - bottom + 2 * centre - left - top + top_left)
        eps = torch.finfo(torch.float32).eps
        a, d = dxx + eps, dyy + eps
        det = a * d - dxy * dxy
        step_x = (d * dx - dxy * dy) / det
        step_y = (a * dy - dxy * dx) / det
        step = torch.stack([step_x, step_y], dim=-1)
        coords = torch.stack([x, y], dim=-1).to(step.dtype)
        coords = torch.where(torch.isfinite(step), coords - step, coords)
        coords = torch.where((scores > 0).unsqueeze(-1), coords, -1.0)
        return coords.to(torch.float32), scores

    def heatmap_to_image(
        self, keypoints: Tensor, center: Tensor, size: Tensor, heatmap_size: tuple[int, int] | None = None
    ) -> Tensor:
        """Heatmap pixels (N, K, 2) -> image pixels with the UDP back-transform of each crop (center, size (N, 2))."""
        width, height = heatmap_size or self.heatmap_size
        center = torch.as_tensor(center, dtype=keypoints.dtype, device=keypoints.device)
        size = torch.as_tensor(size, dtype=keypoints.dtype, device=keypoints.device)
        per_pixel = size / torch.tensor([width - 1.0, height - 1.0], dtype=keypoints.dtype, device=keypoints.device)
        return keypoints * per_pixel[:, None] + (center - 0.5 * size)[:, None]

    def decode_to_image(self, heatmaps: Tensor, center: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
        """`decode` then `heatmap_to_image`, using the heatmaps' own size for the back-transform."""
        keypoints, scores = self.decode(heatmaps)
        height, width = heatmaps.shape[-2:]
        return self.heatmap_to_image(keypoints, center, size, heatmap_size=(width, height)), scores


__all__ = [
    "UDPHeatmapCodec", "box_to_center_scale", "flip_heatmaps_back", "flip_images", "gaussian_blur",
    "gaussian_blur_matrix", "get_udp_warp_matrix", "invert_affine", "merge_flip_test", "transform_points", "warp_affine",
]
