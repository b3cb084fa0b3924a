"""Heatmap maths shared by training and inference: Gaussian targets, decoding and the flip test, per head.

Each keypoint head of a ViTPose model is decoded the way the original release (mmpose 0.x) trained it, which
`HeadCodec` records (stored per head in `VitPoseConfig.head_codecs`):

- UDP (`UDPHeatmapCodec`): targets centred at `joint / stride` with `stride = (input - 1) / (heatmap - 1)`,
  decoding by argmax plus one Newton step on the log of the blurred heatmap (DARK-UDP), back-transform
  `x = u * size / (w - 1) + center - size / 2`. COCO and MPII heads.
- MSRA / standard (`MSRAHeatmapCodec`): targets centred on the rounded `joint / stride` with `stride = input / heatmap`,
  decoding by argmax plus a quarter-pixel shift towards the higher neighbour (or DARK), back-transform
  `x = u * size / w + center - size / 2`. AIC, CrowdPose, AP-10K, APT-36K and COCO-WholeBody heads.

As in mmpose 1.x, a codec only orchestrates named helpers (`get_heatmap_maximum`, `refine_keypoints`,
`refine_keypoints_dark`, `refine_keypoints_dark_udp`, `generate_*_gaussian_heatmaps`); the crop geometry lives in
`geometry.py`. Everything is batched torch. Shapes: N crops, K keypoints; sizes are (height, width); keypoints are
(x, y).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from torch import Tensor

TARGET_TYPES = ("GaussianHeatmap",)
POST_PROCESSES = ("dark", "default")


@dataclass(frozen=True)
class HeadCodec:
    """How one head's heatmaps are encoded for training and decoded at test time (the original's per-config choice).

    Args:
        udp: UDP crop, targets and DARK-UDP decoding; False: the standard crop (`get_affine_transform`), MSRA
            targets and standard decoding.
        target_type: "GaussianHeatmap" (the only type ViTPose uses).
        sigma: target Gaussian sigma in heatmap pixels.
        post_process: refinement after the argmax. "dark": DARK (DARK-UDP with `udp`); "default": the quarter-pixel
            shift towards the higher neighbour (standard decoding only: the original always refines UDP with DARK).
        shift_heatmap: in the flip test, shift the flipped-back heatmaps one pixel right before averaging (the
            original's non-UDP configs do; a UDP crop is mirrored exactly and needs no shift).
        blur_kernel_size: Gaussian blur kernel of DARK (the original's `modulate_kernel`).
    """

    udp: bool = True
    target_type: str = "GaussianHeatmap"
    sigma: float = 2.0
    post_process: str = "dark"
    shift_heatmap: bool = False
    blur_kernel_size: int = 11

    def __post_init__(self) -> None:
        if self.target_type not in TARGET_TYPES:
            raise ValueError(f"HeadCodec.target_type must be one of {TARGET_TYPES}, got {self.target_type!r}.")
        if self.post_process not in POST_PROCESSES:
            raise ValueError(f"HeadCodec.post_process must be one of {POST_PROCESSES}, got {self.post_process!r}.")
        if self.udp and self.post_process != "dark":
            raise ValueError("HeadCodec.post_process must be 'dark' with udp=True: UDP heatmaps decode with DARK-UDP.")
        if not self.sigma > 0:
            raise ValueError(f"HeadCodec.sigma must be positive, got {self.sigma}.")
        if self.blur_kernel_size < 1 or self.blur_kernel_size % 2 != 1:
            raise ValueError(f"HeadCodec.blur_kernel_size must be a positive odd number, got {self.blur_kernel_size}.")
        object.__setattr__(self, "udp", bool(self.udp))
        object.__setattr__(self, "sigma", float(self.sigma))
        object.__setattr__(self, "shift_heatmap", bool(self.shift_heatmap))
        object.__setattr__(self, "blur_kernel_size", int(self.blur_kernel_size))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: HeadCodec | Mapping[str, Any] | None) -> HeadCodec:
        """A `HeadCodec` from its dict (unknown keys are errors naming them); None gives the UDP default."""
        if data is None:
            return cls()
        if isinstance(data, HeadCodec):
            return data
        unknown = set(data) - set(cls.__dataclass_fields__)
        if unknown:
            raise ValueError(f"Unknown head codec keys {sorted(unknown)}; known: {sorted(cls.__dataclass_fields__)}.")
        return cls(**data)


# The two encodings of the original release, as its configs set them.
UDP_CODEC = HeadCodec()
MSRA_CODEC = HeadCodec(udp=False, post_process="default", shift_heatmap=True)


# Flip test ------------------------------------------------------------------------------------------------------


def flip_images(pixel_values: Tensor) -> Tensor:
    """Mirror crops (..., H, W) left-right for the flip test."""
    return pixel_values.flip(-1)


def flip_heatmaps_back(flipped_heatmaps: Tensor, flip_index: Sequence[int], shift_heatmap: bool = False) -> Tensor:
    """Heatmaps predicted on mirrored crops -> heatmaps of the original crops.

    Mirrors W and swaps left/right channels (`flip_index[k]` is the mirror keypoint of k). With `shift_heatmap`, every
    column then takes its left neighbour's values (column 0 keeps its own), as the original's `shift_heatmap=True`:
    a standard crop mirrors about W/2 while its pixels are centred on W/2 - 1/2. A UDP crop needs no shift.
    """
    flip_index = torch.as_tensor(list(flip_index), dtype=torch.long, device=flipped_heatmaps.device)
    if flip_index.numel() != flipped_heatmaps.shape[-3]:
        raise ValueError(f"flip_index has {flip_index.numel()} entries for {flipped_heatmaps.shape[-3]} heatmaps.")
    heatmaps = flipped_heatmaps.index_select(-3, flip_index).flip(-1)
    if shift_heatmap:
        heatmaps = torch.cat([heatmaps[..., :1], heatmaps[..., :-1]], dim=-1)
    return heatmaps


def merge_flip_test(
    heatmaps: Tensor, flipped_heatmaps: Tensor, flip_index: Sequence[int], shift_heatmap: bool = False
) -> Tensor:
    """Average the heatmaps of the crops with those of the mirrored crops (flipped back, see `flip_heatmaps_back`)."""
    return 0.5 * (heatmaps + flip_heatmaps_back(flipped_heatmaps, flip_index, shift_heatmap))


# Blur -----------------------------------------------------------------------------------------------------------


def _reflect101_index(index: Tensor, length: int) -> Tensor:
    """Fold indices into [0, length) the way OpenCV's default border does (reflect-101: ... 2 1 | 0 1 2 ... | n-2 ...)."""
    if length == 1:
        return torch.zeros_like(index)
    period = 2 * (length - 1)
    index = index.remainder(period)
    return torch.where(index >= length, period - index, index)


def gaussian_blur_matrix(
    length: int,
    kernel_size: int = 11,
    sigma: float = 0.0,
    device: torch.device | str | None = None,
    zero_border: bool = False,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """(length, length) matrix B with `B @ v` = OpenCV's 1-D Gaussian blur of v, reflect-101 border included.

    `sigma <= 0` takes OpenCV's default `0.3 * ((k - 1) * 0.5 - 1) + 0.8` (2.0 for k = 11). The 2-D blur of a map X
    is `B_h @ X @ B_w.T`; as a matrix, the blur can also be evaluated at just a few pixels (see
    `refine_keypoints_dark_udp`). `zero_border`: the map is framed with zeros first (mmpose's DARK `_gaussian_blur`).
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
    weights = weights.repeat(length, 1)
    cols = rows + offsets
    if zero_border:
        inside = (cols >= 0) & (cols < length)
        rows, cols, weights = rows[inside], cols[inside], weights[inside]
    else:
        cols = _reflect101_index(cols, length)
    matrix = torch.zeros(length, length, dtype=torch.float64)
    matrix.index_put_((rows.reshape(-1), cols.reshape(-1)), weights.reshape(-1), accumulate=True)
    return matrix.to(device=device, dtype=dtype)


def gaussian_blur(heatmaps: Tensor, kernel_size: int = 11, sigma: float = 0.0) -> Tensor:
    """`cv2.GaussianBlur(h, (k, k), sigma)` of every (H, W) map of a (..., H, W) tensor (reflect-101 border)."""
    height, width = heatmaps.shape[-2:]
    rows = gaussian_blur_matrix(height, kernel_size, sigma, heatmaps.device).to(heatmaps.dtype)
    cols = gaussian_blur_matrix(width, kernel_size, sigma, heatmaps.device).to(heatmaps.dtype)
    return rows @ heatmaps @ cols.T


# Targets --------------------------------------------------------------------------------------------------------


def _gaussian_window(
    keypoints: Tensor, visible: Tensor, heatmap_size: tuple[int, int], stride: tuple[float, float], sigma: float
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """The original's window arithmetic, in float64 as its numpy code runs it.

    Returns the exact position `joint / stride` (N, K, 2), the rounded centre `mu = int(exact + 0.5)` (towards zero,
    like Python's int), the window's first pixel `int(mu - 3 sigma)` and end `int(mu + 3 sigma + 1)` (exclusive),
    and the weights (N, K): 0 for invisible joints
    and for windows wholly outside the heatmap. Float32 arithmetic here moves windows and weights where
    `exact + 0.5` lies within a float32 step of an integer.
    """
    keypoints = torch.as_tensor(keypoints).to(torch.float64)
    visible = torch.as_tensor(visible, device=keypoints.device)
    height, width = heatmap_size
    exact = keypoints / torch.tensor([stride[1], stride[0]], dtype=torch.float64, device=keypoints.device)
    mu = torch.trunc(exact + 0.5)
    radius = 3 * sigma
    upper_left = torch.trunc(mu - radius)
    bottom_right = torch.trunc(mu + radius + 1)
    limits = torch.tensor([width, height], dtype=torch.float64, device=keypoints.device)
    outside = ((upper_left >= limits) | (bottom_right < 0)).any(-1)
    weights = (visible > 0) & ~outside
    return exact, mu, upper_left, bottom_right, weights


def _window_mask(upper_left: Tensor, bottom_right: Tensor, weights: Tensor, heatmap_size: tuple[int, int]) -> Tensor:
    """(N, K, H, W) True on the pixels of each joint's window [upper_left, bottom_right), for weighted joints."""
    height, width = heatmap_size
    xs = torch.arange(width, dtype=torch.float64, device=upper_left.device)
    ys = torch.arange(height, dtype=torch.float64, device=upper_left.device)
    inside_x = (xs >= upper_left[..., 0:1]) & (xs < bottom_right[..., 0:1])
    inside_y = (ys >= upper_left[..., 1:2]) & (ys < bottom_right[..., 1:2])
    return inside_y[..., :, None] & inside_x[..., None, :] & weights[..., None, None]


@lru_cache(maxsize=8)
def _msra_window(sigma: float) -> Tensor:
    """The original's float32 Gaussian window `exp(-((x - x0)^2 + (y - y0)^2) / (2 sigma^2))`, computed with numpy.

    numpy's float32 `exp` and torch's round differently in the last bit; numpy's is what the original used.
    """
    size = 2 * 3 * sigma + 1
    x = np.arange(0, size, 1, np.float32)
    y = x[:, None]
    x0 = y0 = size // 2
    return torch.from_numpy(np.exp(-((x - x0) ** 2 + (y - y0) ** 2) / (2 * sigma**2)).astype(np.float32))


def generate_udp_gaussian_heatmaps(
    keypoints: Tensor, visible: Tensor, heatmap_size: tuple[int, int], stride: tuple[float, float], sigma: float
) -> tuple[Tensor, Tensor]:
    """UDP targets (mmpose 0.x `_udp_generate_target`, GaussianHeatmap): Gaussians at the exact `joint / stride`.

    Keypoints (N, K, 2) in crop pixels, visibility (N, K) -> heatmaps (N, K, H, W) float32 and weights (N, K).
    The Gaussian is evaluated in float64 (the original's float64 sub-pixel offset promotes it) and stored as float32.
    """
    exact, mu, upper_left, bottom_right, weights = _gaussian_window(keypoints, visible, heatmap_size, stride, sigma)
    height, width = heatmap_size
    # Window coordinates, as the original: pixel p is window index p - upper_left, centred at size // 2 + offset.
    centre = (2 * 3 * sigma + 1) // 2 + (exact - mu)
    xs = torch.arange(width, dtype=torch.float64, device=exact.device) - upper_left[..., 0:1]
    ys = torch.arange(height, dtype=torch.float64, device=exact.device) - upper_left[..., 1:2]
    squared = (ys - centre[..., 1:2])[..., :, None] ** 2 + (xs - centre[..., 0:1])[..., None, :] ** 2
    heatmaps = torch.exp(-squared / (2 * sigma**2))
    mask = _window_mask(upper_left, bottom_right, weights, heatmap_size)
    return torch.where(mask, heatmaps, 0.0).to(torch.float32), weights.to(torch.float32)


def generate_msra_gaussian_heatmaps(
    keypoints: Tensor, visible: Tensor, heatmap_size: tuple[int, int], stride: tuple[float, float], sigma: float
) -> tuple[Tensor, Tensor]:
    """Standard targets (mmpose 0.x `_msra_generate_target`, GaussianHeatmap): Gaussians on the rounded position.

    Keypoints (N, K, 2) in crop pixels, visibility (N, K) -> heatmaps (N, K, H, W) float32 and weights (N, K), bit
    for bit the original's: the window placement in float64, its float32 window values pasted.
    """
    _, _, upper_left, bottom_right, weights = _gaussian_window(keypoints, visible, heatmap_size, stride, sigma)
    height, width = heatmap_size
    window = _msra_window(float(sigma)).to(upper_left.device)
    last = window.shape[-1] - 1
    xs = (torch.arange(width, device=upper_left.device) - upper_left[..., 0:1].long()).clamp(0, last)
    ys = (torch.arange(height, device=upper_left.device) - upper_left[..., 1:2].long()).clamp(0, last)
    heatmaps = window[ys[..., :, None], xs[..., None, :]]
    mask = _window_mask(upper_left, bottom_right, weights, heatmap_size)
    return torch.where(mask, heatmaps, 0.0), weights.to(torch.float32)


# Decoding -------------------------------------------------------------------------------------------------------


def get_heatmap_maximum(heatmaps: Tensor) -> tuple[Tensor, Tensor]:
    """Heatmaps (N, K, H, W) -> integer argmax (N, K, 2) as (x, y) floats (first maximum wins) and the maxima (N, K).

    Where the maximum is <= 0 the location is -1, as the original's `_get_max_preds`.
    """
    num, joints, height, width = heatmaps.shape
    scores, index = heatmaps.reshape(num, joints, height * width).max(dim=-1)
    coords = torch.stack([index % width, torch.div(index, width, rounding_mode="floor")], dim=-1).to(torch.float32)
    return torch.where((scores > 0).unsqueeze(-1), coords, -1.0), scores


def _gather(maps: Tensor, x: Tensor, y: Tensor) -> Tensor:
    """maps (N, K, H, W) at integer pixels x, y (N, K), indices clamped into the map."""
    height, width = maps.shape[-2:]
    flat = (y.clamp(0, height - 1) * width + x.clamp(0, width - 1)).long()
    return maps.flatten(-2).gather(-1, flat.unsqueeze(-1)).squeeze(-1)


def refine_keypoints(keypoints: Tensor, heatmaps: Tensor) -> Tensor:
    """The standard quarter-pixel shift (mmpose 0.x `post_process='default'`) of argmax keypoints (N, K, 2).

    Each coordinate moves by 0.25 towards its higher neighbour (sign of the difference, 0 on a tie), only where the
    argmax lies at `1 < x < W - 1` and `1 < y < H - 1`, as the original checks.
    """
    height, width = heatmaps.shape[-2:]
    x, y = keypoints[..., 0].long(), keypoints[..., 1].long()
    inside = (x > 1) & (x < width - 1) & (y > 1) & (y < height - 1)
    dx = _gather(heatmaps, x + 1, y) - _gather(heatmaps, x - 1, y)
    dy = _gather(heatmaps, x, y + 1) - _gather(heatmaps, x, y - 1)
    shift = 0.25 * torch.sign(torch.stack([dx, dy], dim=-1))
    return torch.where(inside.unsqueeze(-1), keypoints + shift.to(keypoints.dtype), keypoints)


def refine_keypoints_dark(keypoints: Tensor, heatmaps: Tensor, blur_kernel_size: int = 11) -> Tensor:
    """DARK on standard heatmaps (mmpose 0.x `post_process='unbiased'`): one Taylor step on the log-heatmap.

    The maps are blurred with a zero border and rescaled to their original maximum, floored at 1e-10 and logged;
    derivatives use the original's stencils (second derivatives over two pixels); only argmaxes at
    `1 < x < W - 2`, `1 < y < H - 2` with an invertible Hessian move.
    """
    height, width = heatmaps.shape[-2:]
    maps = heatmaps.detach().to(torch.float64)
    rows = gaussian_blur_matrix(height, blur_kernel_size, 0.0, maps.device, zero_border=True, dtype=maps.dtype)
    cols = gaussian_blur_matrix(width, blur_kernel_size, 0.0, maps.device, zero_border=True, dtype=maps.dtype)
    blurred = rows @ maps @ cols.T
    peak, blurred_peak = maps.flatten(-2).amax(-1), blurred.flatten(-2).amax(-1)
    ratio = torch.where(blurred_peak != 0, peak / torch.where(blurred_peak != 0, blurred_peak, 1.0), 0.0)
    logs = (blurred * ratio[..., None, None]).clamp_min(1e-10).log()

    x, y = keypoints[..., 0].long(), keypoints[..., 1].long()
    inside = (x > 1) & (x < width - 2) & (y > 1) & (y < height - 2)

    def at(ox: int, oy: int) -> Tensor:
        return _gather(logs, x + ox, y + oy)

    centre = at(0, 0)
    dx = 0.5 * (at(1, 0) - at(-1, 0))
    dy = 0.5 * (at(0, 1) - at(0, -1))
    dxx = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    dyy = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    det = dxx * dyy - dxy**2
    safe = torch.where(det != 0, det, 1.0)
    step = torch.stack([(dyy * dx - dxy * dy) / safe, (dxx * dy - dxy * dx) / safe], dim=-1)
    move = (inside & (det != 0)).unsqueeze(-1)
    return torch.where(move, keypoints.to(torch.float64) - step, keypoints.to(torch.float64)).to(keypoints.dtype)


def refine_keypoints_dark_udp(keypoints: Tensor, heatmaps: Tensor, blur_kernel_size: int = 11) -> Tensor:
    """DARK-UDP (mmpose 0.x `post_dark_udp`): one Newton step on the log of the blurred heatmap at each argmax.

    Blur with OpenCV's default border, clip to [0.001, 50], log, edge padding of one pixel, central differences,
    `coords -= inv(H + eps I) @ grad` (solved in float64 like the original). Locations of -1 stay -1.
    """
    height, width = heatmaps.shape[-2:]
    heatmaps = heatmaps.detach().to(torch.float32)
    x, y = keypoints[..., 0].long(), keypoints[..., 1].long()
    # The blurred log-heatmap is only needed on the 3x3 pixels around each maximum: gather those rows and columns
    # of the blur matrices instead of blurring whole maps. Clamping the indices is the original's edge padding.
    steps = torch.arange(-1, 2, device=heatmaps.device)
    near_y = (y.unsqueeze(-1) + steps).clamp(0, height - 1)
    near_x = (x.unsqueeze(-1) + steps).clamp(0, width - 1)
    blur_rows = gaussian_blur_matrix(height, blur_kernel_size, device=heatmaps.device)[near_y]
    blur_cols = gaussian_blur_matrix(width, blur_kernel_size, device=heatmaps.device)[near_x]
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
    step = torch.stack([(d * dx - dxy * dy) / det, (a * dy - dxy * dx) / det], dim=-1)
    coords = keypoints.to(step.dtype)
    refined = torch.where(torch.isfinite(step), coords - step, coords)
    valid = (keypoints >= 0).all(-1, keepdim=True)
    return torch.where(valid, refined, coords).to(torch.float32)


# Codecs ---------------------------------------------------------------------------------------------------------


class HeatmapCodec:
    """Base of the per-head codecs: sizes, checks and the shared decode-to-image path.

    Args:
        input_size: (height, width) of the model input crop.
        heatmap_size: (height, width) of the heatmaps.
        settings: the head's `HeadCodec` (sigma, refinement, blur kernel).
    """

    settings_default: HeadCodec = UDP_CODEC

    def __init__(
        self,
        input_size: tuple[int, int] = (256, 192),
        heatmap_size: tuple[int, int] = (64, 48),
        settings: HeadCodec | Mapping[str, Any] | None = None,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self.settings = HeadCodec.from_dict(settings) if settings is not None else self.settings_default
        if self.settings.udp != self.settings_default.udp:
            raise ValueError(f"{type(self).__name__} got settings with udp={self.settings.udp}: use build_codec.")
        if min(self.heatmap_size) < 2 or min(self.input_size) < 2:
            raise ValueError(f"input_size {input_size} and heatmap_size {heatmap_size} must be at least 2 pixels.")

    @property
    def stride(self) -> tuple[float, float]:
        """Input pixels per heatmap pixel, (height, width)."""
        raise NotImplementedError

    def _image_pixels_per_heatmap_pixel(self, heatmap_size: tuple[int, int]) -> tuple[float, float]:
        """(x, y) divisor of the box size in the back-transform: heatmap (w, h), or (w - 1, h - 1) with UDP."""
        raise NotImplementedError

    def encode(self, keypoints: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
        raise NotImplementedError

    def refine(self, keypoints: Tensor, heatmaps: Tensor) -> Tensor:
        raise NotImplementedError

    def decode(self, heatmaps: Tensor) -> tuple[Tensor, Tensor]:
        """Heatmaps (N, K, h, w) -> keypoints (N, K, 2) in heatmap pixels and scores (N, K), the raw maxima.

        The argmax (`get_heatmap_maximum`), then the head's refinement; locations whose maximum is <= 0 stay -1.
        """
        heatmaps = torch.as_tensor(heatmaps)
        if heatmaps.ndim != 4:
            raise ValueError(f"Heatmaps must have shape (N, K, H, W), got {tuple(heatmaps.shape)}.")
        heatmaps = heatmaps.detach().to(torch.float32)
        keypoints, scores = get_heatmap_maximum(heatmaps)
        if keypoints.numel() == 0:
            return keypoints, scores
        return self.refine(keypoints, heatmaps).to(torch.float32), scores

    def heatmap_to_image(
        self, keypoints: Tensor, center: Tensor, size: Tensor, heatmap_size: tuple[int, int] | None = None
    ) -> Tensor:
        """Heatmap pixels (N, K, 2) -> image pixels through each crop box (center, size (N, 2), x/y order)."""
        heatmap_size = heatmap_size or self.heatmap_size
        center = torch.as_tensor(center, dtype=keypoints.dtype, device=keypoints.device)
        size = torch.as_tensor(size, dtype=keypoints.dtype, device=keypoints.device)
        divisor = torch.tensor(self._image_pixels_per_heatmap_pixel(heatmap_size), dtype=keypoints.dtype,
                               device=keypoints.device)
        return keypoints * (size / divisor)[:, None] + (center - 0.5 * size)[:, None]

    def decode_to_image(self, heatmaps: Tensor, center: Tensor, size: Tensor) -> tuple[Tensor, Tensor]:
        """`decode` then `heatmap_to_image`, using the heatmaps' own size for the back-transform."""
        keypoints, scores = self.decode(heatmaps)
        return self.heatmap_to_image(keypoints, center, size, heatmap_size=tuple(heatmaps.shape[-2:])), scores


class UDPHeatmapCodec(HeatmapCodec):
    """UDP Gaussian targets and DARK-UDP decoding (mmpose 0.x `use_udp=True`; mmpose 1.x `UDPHeatmap`)."""

    settings_default = UDP_CODEC

    @property
    def stride(self) -> tuple[float, float]:
        return tuple((i - 1.0) / (h - 1.0) for i, h in zip(self.input_size, self.heatmap_size))

    def _image_pixels_per_heatmap_pixel(self, heatmap_size: tuple[int, int]) -> tuple[float, float]:
        return heatmap_size[1] - 1.0, heatmap_size[0] - 1.0

    def encode(self, keypoints: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
        """Keypoints (N, K, 2) in crop pixels and visibility (N, K) -> heatmaps (N, K, h, w), weights (N, K)."""
        return generate_udp_gaussian_heatmaps(keypoints, visible, self.heatmap_size, self.stride, self.settings.sigma)

    def refine(self, keypoints: Tensor, heatmaps: Tensor) -> Tensor:
        return refine_keypoints_dark_udp(keypoints, heatmaps, self.settings.blur_kernel_size)


class MSRAHeatmapCodec(HeatmapCodec):
    """Standard Gaussian targets and decoding (mmpose 0.x without UDP; mmpose 1.x `MSRAHeatmap`)."""

    settings_default = MSRA_CODEC

    @property
    def stride(self) -> tuple[float, float]:
        return tuple(float(i) / h for i, h in zip(self.input_size, self.heatmap_size))

    def _image_pixels_per_heatmap_pixel(self, heatmap_size: tuple[int, int]) -> tuple[float, float]:
        return float(heatmap_size[1]), float(heatmap_size[0])

    def encode(self, keypoints: Tensor, visible: Tensor) -> tuple[Tensor, Tensor]:
        """Keypoints (N, K, 2) in crop pixels and visibility (N, K) -> heatmaps (N, K, h, w), weights (N, K)."""
        return generate_msra_gaussian_heatmaps(keypoints, visible, self.heatmap_size, self.stride, self.settings.sigma)

    def refine(self, keypoints: Tensor, heatmaps: Tensor) -> Tensor:
        if self.settings.post_process == "dark":
            return refine_keypoints_dark(keypoints, heatmaps, self.settings.blur_kernel_size)
        return refine_keypoints(keypoints, heatmaps)


def build_codec(
    settings: HeadCodec | Mapping[str, Any] | None, input_size: tuple[int, int], heatmap_size: tuple[int, int]
) -> HeatmapCodec:
    """The codec of a head's settings (None: UDP) for crops of `input_size` and heatmaps of `heatmap_size` (h, w)."""
    settings = HeadCodec.from_dict(settings)
    return (UDPHeatmapCodec if settings.udp else MSRAHeatmapCodec)(input_size, heatmap_size, settings)


__all__ = [
    "MSRA_CODEC",
    "UDP_CODEC",
    "HeadCodec",
    "HeatmapCodec",
    "MSRAHeatmapCodec",
    "UDPHeatmapCodec",
    "build_codec",
    "flip_heatmaps_back",
    "flip_images",
    "gaussian_blur",
    "gaussian_blur_matrix",
    "generate_msra_gaussian_heatmaps",
    "generate_udp_gaussian_heatmaps",
    "get_heatmap_maximum",
    "merge_flip_test",
    "refine_keypoints",
    "refine_keypoints_dark",
    "refine_keypoints_dark_udp",
]
