"""Crop geometry of top-down pose estimation: person box -> crop box, the affine crop matrices, the batched warp.

Two crop conventions of the original ViTPose release (mmpose 0.x) live here:

- UDP (`get_udp_warp_matrix`, mmpose's `get_warp_matrix`): the box of `size` image pixels spans crop pixels
  0 .. W-1 exactly, `x_crop = (W - 1) / size_w * (x - center_x + size_w / 2)`;
- standard (`get_affine_matrix`, mmpose's `get_affine_transform`): the box centre lands on crop pixel W/2 and the box
  spans W pixels, `x_crop = W / size_w * (x - center_x) + W / 2`; used by the heads trained without UDP.

Everything is batched torch. Sizes are (height, width) in every signature; points, centres and box sizes are (x, y)
and (w, h) image coordinates.
"""

from __future__ import annotations

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


def _as_crop_inputs(center: Tensor, size: Tensor, rotation: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
    center = torch.as_tensor(center, dtype=torch.float32) if not isinstance(center, Tensor) else center
    if not center.is_floating_point():
        center = center.to(torch.float32)
    size = torch.as_tensor(size, dtype=center.dtype, device=center.device)
    if rotation is None:
        rotation = torch.zeros(center.shape[:-1], dtype=center.dtype, device=center.device)
    theta = torch.deg2rad(torch.as_tensor(rotation, dtype=center.dtype, device=center.device))
    return center, size, theta


def get_udp_warp_matrix(
    center: Tensor, size: Tensor, rotation: Tensor | None, output_size: tuple[int, int]
) -> Tensor:
    """Affine matrices (N, 2, 3) mapping image pixels to crop pixels (UDP, mmpose's `get_warp_matrix`).

    `rotation` (N,) in degrees, or None: the crop box turns counter-clockwise about its centre in the image (y down),
    so the content appears turned clockwise in the crop. `output_size` is (height, width) of the crop. The box of
    `size` pixels spans crop pixels 0 .. W-1 exactly.
    """
    center, size, theta = _as_crop_inputs(center, size, rotation)
    cos, sin = torch.cos(theta), torch.sin(theta)
    scale_x = (output_size[1] - 1.0) / size[..., 0]
    scale_y = (output_size[0] - 1.0) / size[..., 1]
    cx, cy = center[..., 0], center[..., 1]
    row_x = torch.stack(
        [cos * scale_x, -sin * scale_x, scale_x * (-cx * cos + cy * sin + 0.5 * size[..., 0])], dim=-1
    )
    row_y = torch.stack(
        [sin * scale_y, cos * scale_y, scale_y * (-cx * sin - cy * cos + 0.5 * size[..., 1])], dim=-1
    )
    return torch.stack([row_x, row_y], dim=-2)


def get_affine_matrix(
    center: Tensor, size: Tensor, rotation: Tensor | None, output_size: tuple[int, int]
) -> Tensor:
    """Affine matrices (N, 2, 3) image -> crop pixels of the standard (non-UDP) crop, mmpose's `get_affine_transform`.

    The original builds it from three point pairs and uses the box *width* only: the map is a similarity with scale
    `W / size_w` that puts `center` on crop pixel (W/2, H/2). Its rotation turns the opposite way to the UDP matrix's
    for the same angle (the original's two functions disagree; each is reproduced as it is). `output_size` is
    (height, width).
    """
    center, size, theta = _as_crop_inputs(center, size, rotation)
    cos, sin = torch.cos(theta), torch.sin(theta)
    scale = output_size[1] / size[..., 0]
    cx, cy = center[..., 0], center[..., 1]
    a, b = scale * cos, scale * sin
    row_x = torch.stack([a, b, 0.5 * output_size[1] - a * cx - b * cy], dim=-1)
    row_y = torch.stack([-b, a, 0.5 * output_size[0] + b * cx - a * cy], dim=-1)
    return torch.stack([row_x, row_y], dim=-2)


def get_crop_matrix(
    center: Tensor, size: Tensor, rotation: Tensor | None, output_size: tuple[int, int], udp: bool
) -> Tensor:
    """The crop matrix of a head: UDP (`get_udp_warp_matrix`) or standard (`get_affine_matrix`), per its codec."""
    return (get_udp_warp_matrix if udp else get_affine_matrix)(center, size, rotation, output_size)


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

    It samples in floating point: on uint8 images it differs from OpenCV's fixed-point warp (1/32-pixel positions,
    rounded results) by up to about half a grey level on smooth images, more on sharp edges.

    Args:
        images: (B, C, H, W) tensor or a list of (C, H, W) tensors (sizes may differ). Integer images are sampled
            as float values of the same range.
        matrices: (N, 2, 3) image -> crop matrices (as given to cv2).
        output_size: (height, width) of the crops.
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
    height, width = int(output_size[0]), int(output_size[1])
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


__all__ = [
    "box_to_center_scale", "get_affine_matrix", "get_crop_matrix", "get_udp_warp_matrix", "invert_affine",
    "transform_points", "warp_affine",
]
