"""Images in: the one loader behind the pipeline, the command line, evaluation and the training data.

Files are read with their EXIF orientation applied (as a photo viewer, and OpenCV's default `imread`, show them),
16-bit pictures are scaled to 8 bits instead of saturating to white, and every error names the image.
"""

from __future__ import annotations

import io
import os
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

URL_PREFIXES = ("http://", "https://")


def to_uint8(array: np.ndarray) -> np.ndarray:
    """Pixel values of any range as uint8: [0, 1] floats x 255, 16-bit integers / 257, 8-bit kept."""
    if array.dtype == np.uint8:
        return array
    if array.dtype == np.bool_:
        return array.astype(np.uint8) * 255
    values = array.astype(np.float64)
    finite = values[np.isfinite(values)]
    peak = float(finite.max()) if finite.size else 0.0
    if np.issubdtype(array.dtype, np.floating) and peak <= 1.0:
        values = values * 255.0
    elif array.dtype == np.uint16 or peak > 255.0:
        values = values / 257.0  # 65535 -> 255
    return np.clip(np.nan_to_num(values), 0, 255).round().astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """An RGB PIL image; 16-bit, 32-bit integer and float modes scaled to 8 bits by `to_uint8`."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = Image.fromarray(to_uint8(np.asarray(image)))
    return image if image.mode == "RGB" else image.convert("RGB")


def _decode(source: str | io.BytesIO, what: str, name: str) -> Image.Image:
    try:
        with Image.open(source) as opened:
            opened.load()
            return to_rgb(ImageOps.exif_transpose(opened))
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise ValueError(f"{what}: cannot read {name} as an image ({error}).") from error


def open_image_file(path: str | os.PathLike, what: str) -> Image.Image:
    """An image file as an RGB PIL image, EXIF orientation applied; `what` names it in errors ("Image 3")."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{what}: no such file {path!r}.")
    return _decode(path, what, repr(path))


def decode_image_bytes(data: bytes | bytearray | memoryview, what: str) -> Image.Image:
    """Encoded image bytes (a `datasets` image column, an upload) as an RGB PIL image, EXIF orientation applied."""
    return _decode(io.BytesIO(bytes(data)), what, "its bytes")


def load_image(image: Any, index: int = 0, timeout: float | None = None) -> Image.Image:
    """An RGB PIL image from a path, URL, encoded bytes, PIL image, (H, W[, C]) array or (C, H, W) tensor; errors
    name the index."""
    what = f"Image {index}"
    if isinstance(image, os.PathLike):
        image = os.fspath(image)
    if isinstance(image, str):
        if image.startswith(URL_PREFIXES):
            from transformers.image_utils import load_image as load_url

            try:
                image = load_url(image, timeout=timeout)
            except Exception as error:  # requests/httpx errors differ by version; all mean "could not fetch"
                raise ValueError(f"{what}: cannot fetch {image!r} ({type(error).__name__}: {error}).") from error
        else:
            return open_image_file(image, what)
    elif isinstance(image, (bytes, bytearray, memoryview)):
        return decode_image_bytes(image, what)
    elif isinstance(image, torch.Tensor):
        image = image.detach().cpu().numpy()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 3 and array.shape[0] in (1, 3) and array.shape[-1] not in (1, 3, 4):
            array = array.transpose(1, 2, 0)  # channels first
        if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
            raise ValueError(f"{what}: expected an (H, W), (H, W, C) or (C, H, W) array, got shape {image.shape}.")
        if array.shape[0] == 0 or array.shape[1] == 0:
            raise ValueError(f"{what} is empty: shape {image.shape}.")
        array = to_uint8(array)
        image = Image.fromarray(array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array)
    if not isinstance(image, Image.Image):
        raise TypeError(f"{what}: expected a path, URL, PIL image or numpy array, got {type(image).__name__}.")
    if image.width == 0 or image.height == 0:
        raise ValueError(f"{what} is empty: size {image.width}x{image.height}.")
    return to_rgb(image)
