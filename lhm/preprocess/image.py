"""Decode a photo from a path, bytes, PIL, numpy or torch into an upright RGB uint8 array and an optional alpha."""
from __future__ import annotations

import io
import math
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageOps, JpegImagePlugin

from ..errors import InputError
from .types import LoadedImage

MIN_SIDE = 128
_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}
_WIDE_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I", "F"}


def load_image(source, max_side: int = 2048, *, min_side: int = MIN_SIDE) -> LoadedImage:
    """Decode ``source`` (path, bytes, PIL image, numpy array or torch tensor) into a LoadedImage.

    EXIF orientation is applied, every mode becomes RGB plus alpha in [0,1] (None when fully opaque), animations
    keep their first frame, and the long side is capped at ``max_side``. Bad input raises InputError.
    """
    notes: list[str] = []
    if isinstance(source, (str, os.PathLike)):
        path = _check_path(Path(source))
        with _open(path, path.name) as img:
            rgb, alpha = _decode(img, path.name, max_side, min_side, notes)
    elif isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise InputError("The image data is empty (0 bytes) — pass the bytes of a JPEG, PNG or WebP photo.")
        with _open(io.BytesIO(bytes(source)), "The image data") as img:
            rgb, alpha = _decode(img, "The photo", max_side, min_side, notes)
    elif isinstance(source, Image.Image):
        rgb, alpha = _decode(source, "The photo", max_side, min_side, notes)
    else:
        rgb, alpha = _from_array(source, max_side, min_side, notes)
    if alpha is not None and alpha.min() >= 1.0:
        alpha = None
    return LoadedImage(rgb=rgb, alpha=alpha, warnings=notes)


def _check_path(path: Path) -> Path:
    if not path.exists():
        raise InputError(f"Image file not found: {path} — check the path.")
    if not path.is_file():
        raise InputError(f"{path} is not a file — pass the path of a photo (JPEG, PNG or WebP).")
    if path.stat().st_size == 0:
        raise InputError(f"{path.name} is empty (0 bytes) — the file was not saved or copied completely; "
                         "use another copy.")
    return path


def _open(fp, name: str) -> Image.Image:
    try:
        # Our own pixel limit (_check_pixels) decides; JPEGs past PIL's soft limit are fine thanks to draft().
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return Image.open(fp)
    except Image.DecompressionBombError as err:
        raise InputError(
            f"{name} is too large to decode safely ({err}) — downscale it, e.g. to 4096 px on the long side."
        ) from err
    except Exception as err:  # PIL raises many types for non-images; all mean the same to the user
        raise InputError(f"{name} is not a readable image file — use a JPEG, PNG or WebP photo.") from err


def _check_size(width: int, height: int, name: str, min_side: int) -> None:
    if min(width, height) < min_side:
        raise InputError(
            f"{name} is {width}x{height} px; LHM needs at least {min_side} px on the short side — use a larger photo."
        )


def _check_pixels(img: Image.Image, name: str) -> None:
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit and not isinstance(img, JpegImagePlugin.JpegImageFile):
        raise InputError(
            f"{name} is {img.width}x{img.height} px, more than the {limit / 1e6:.0f} megapixels that can be decoded "
            "safely — downscale it, e.g. to 4096 px on the long side, or save it as JPEG."
        )


def _decode(img: Image.Image, name: str, max_side: int, min_side: int, notes: list[str]):
    width, height = img.size
    _check_size(width, height, name, min_side)
    _check_pixels(img, name)
    # MPO is a phone JPEG with an embedded preview/depth frame, not an animation.
    if getattr(img, "is_animated", False) and img.format != "MPO":
        notes.append(f"{name} is animated ({img.n_frames} frames); only the first frame is used.")
        img.seek(0)
    scale = max_side / max(width, height)
    if scale < 1:
        # JPEG decodes straight at 1/2..1/8 size, so a huge photo never sits in memory at full resolution.
        img.draft(img.mode, (math.ceil(width * scale), math.ceil(height * scale)))
    try:
        img.load()
        img = _to_rgb_or_rgba(ImageOps.exif_transpose(img))
    except Exception as err:  # truncated or corrupt data surfaces as OSError, SyntaxError, ValueError, ...
        raise InputError(f"{name} could not be decoded ({err}); the file is corrupt or truncated — "
                         "re-save or re-download the photo.") from err
    if scale < 1:
        size = long_side_size(img.width, img.height, max_side)
        img = img.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
        notes.append(f"{name} is {width}x{height} px; it was downscaled to {size[0]}x{size[1]} px.")
    arr = np.asarray(img)
    alpha = arr[..., 3].astype(np.float32) / 255 if img.mode == "RGBA" else None
    return np.ascontiguousarray(arr[..., :3]), alpha


def _to_rgb_or_rgba(img: Image.Image) -> Image.Image:
    if img.mode in _WIDE_MODES:
        img = Image.fromarray(_wide_to_uint8(np.asarray(img), img.mode), "L")
    has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
    return img.convert("RGBA" if has_alpha else "RGB")


def _wide_to_uint8(arr: np.ndarray, mode: str) -> np.ndarray:
    arr = arr.astype(np.float32)
    # Mode "I" (32-bit) usually carries 16-bit data from PNG/TIFF decoders; small values are plain 8-bit.
    if mode.startswith("I;16") or (mode == "I" and arr.max() > 255):
        arr = arr / 257
    elif mode == "F" and arr.max() <= 1:
        arr = arr * 255
    return np.clip(arr + 0.5, 0, 255).astype(np.uint8)


def long_side_size(width: int, height: int, side: int, *, upscale: bool = False) -> tuple[int, int]:
    """(width, height) scaled so the long side is ``side`` (never enlarged unless ``upscale``), at least 1 px."""
    scale = side / max(width, height)
    if scale >= 1.0 and not upscale:
        return width, height
    return max(1, round(width * scale)), max(1, round(height * scale))


def _from_array(data, max_side: int, min_side: int, notes: list[str]):
    arr = _as_hwc(_as_numpy(data), notes)
    height, width = arr.shape[:2]
    _check_size(width, height, "The image array", min_side)
    unit = _to_unit(arr)
    if max(width, height) > max_side:
        size = long_side_size(width, height, max_side)
        unit = cv2.resize(unit, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1)
        notes.append(f"The image array is {width}x{height} px; it was downscaled to {size[0]}x{size[1]} px.")
    channels = unit.shape[2]
    gray_or_rgb = unit[..., :3] if channels >= 3 else np.repeat(unit[..., :1], 3, axis=2)
    alpha = unit[..., -1].copy() if channels in (2, 4) else None
    return (gray_or_rgb * 255 + 0.5).astype(np.uint8), alpha


def _as_numpy(data) -> np.ndarray:
    if isinstance(data, torch.Tensor):
        data = data.detach().cpu()
        return (data.float() if data.dtype in (torch.float16, torch.bfloat16) else data).numpy()
    if isinstance(data, np.ndarray):
        return data
    raise InputError(
        f"Cannot read an image from a {type(data).__name__} — pass a file path, bytes, a PIL image, "
        "a numpy array or a torch tensor."
    )


def _as_hwc(arr: np.ndarray, notes: list[str]) -> np.ndarray:
    if arr.size == 0:
        raise InputError(f"The image array is empty (shape {arr.shape}) — pass a decoded photo.")
    if arr.ndim == 4:  # a batch, e.g. ComfyUI's IMAGE [B,H,W,C]
        if arr.shape[0] > 1:
            notes.append(f"Got a batch of {arr.shape[0]} images; only the first is used.")
        arr = arr[0]
    if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] not in (1, 2, 3, 4):
        arr = arr.transpose(1, 2, 0)  # channels-first, as torch usually stores images
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(
            f"An image array must be HxW, HxWx1, HxWx3 or HxWx4 (or 1xHxWx3 like ComfyUI's IMAGE); "
            f"got shape {arr.shape}."
        )
    return arr


def _to_unit(arr: np.ndarray) -> np.ndarray:
    if arr.dtype == np.bool_:
        return arr.astype(np.float32)
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / 255
    if arr.dtype == np.uint16:
        return arr.astype(np.float32) / 65535
    if np.issubdtype(arr.dtype, np.floating):
        if not np.isfinite(arr).all():
            raise InputError("The image array contains NaN or infinite values — "
                             "fix them (e.g. with np.nan_to_num) first.")
        low, high = float(arr.min()), float(arr.max())
        if low < -1e-3 or high > 1 + 1e-3:
            raise InputError(
                f"A float image must hold values in [0, 1], this one spans [{low:.3g}, {high:.3g}] — "
                "divide 0-255 values by 255."
            )
        return np.clip(arr, 0, 1).astype(np.float32)
    if np.issubdtype(arr.dtype, np.integer) and arr.min() >= 0 and arr.max() <= 255:
        return arr.astype(np.float32) / 255
    raise InputError(
        f"Image arrays of type {arr.dtype} are not supported — use uint8, uint16, bool or float in [0, 1]."
    )
