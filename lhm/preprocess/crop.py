"""The LHM framing of a person: the crop the engines work on, and the exact tensors the LHM network takes.

Both follow the official runner (reference §4.1, §4.2): the tight box of ``mask >= 0.5`` scaled
x1.1 with its ``int()`` quirks and clipped to the image, then padded to a 5:3 (h/w) aspect, white
in the image and 0 in the mask (at the sides when the box is narrow, only at the top when it is
wide). The official runner asserts the box is taller than wide; here wide boxes take the
top-padding branch instead of failing.
"""
from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from ..errors import InputError
from .image import long_side_size
from .segmentation import cut_edges
from .types import PersonCrop

ASPECT = 5.0 / 3.0  # height / width of the LHM framing
BODY_MAX_SIZE = 896  # the runner's keep-aspect resize before its centre crop
HEAD_SIZE = 112
HEAD_EXPAND = 1.65


def _check(rgb: np.ndarray, mask: np.ndarray) -> None:
    if rgb.ndim != 3 or rgb.shape[2] < 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an RGB image uint8 [H,W,3], got {rgb.dtype} {rgb.shape}")
    if mask.shape != rgb.shape[:2]:
        raise InputError(f"the mask {mask.shape} does not match the image {rgb.shape[:2]}")
    if not (mask >= 0.5).any():
        raise InputError("the person mask is empty: no person was found in the image; use a photo with one person")


def person_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """The runner's ``get_bbox``: tight box of ``mask >= 0.5`` x1.1, clipped; (l, t, r, b) exclusive right/bottom."""
    ys, xs = np.nonzero(mask >= 0.5)
    l, t, r, b = int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())
    # Bbox.to_xywh then get_box(): centre and size truncated with int()
    cx, cy, w, h = int((l + r) / 2), int((t + b) / 2), r - l, b - t
    w, h = w * 1.1, h * 1.1
    H, W = mask.shape
    return (int(max(cx - w // 2, 0)), int(max(cy - h // 2, 0)),
            int(min(cx + w - w // 2, W)), int(min(cy + h - h // 2, H)))


def _official_padding(w: int, h: int) -> tuple[int, int]:
    """(each side, top) padding of the runner's 5:3 fix for a w x h box."""
    target_w = int(min(w * ((h / w) / ASPECT), h))
    if target_w - w > 0:
        return (target_w - w) // 2, 0
    return 0, max(int(w * ASPECT - h), 0)


def _pad(img: np.ndarray, top: int, left: int, right: int, value: float) -> np.ndarray:
    widths = ((top, 0), (left, right)) + ((0, 0),) * (img.ndim - 2)
    return np.pad(img, widths, mode="constant", constant_values=value)


def crop_person(rgb: np.ndarray, mask: np.ndarray, height: int = 640) -> PersonCrop:
    """Cut the person out at the LHM framing and resize it to ``height`` x ``round(height*3/5)`` (INTER_AREA).

    rgb uint8 [H,W,3] (the loaded image), mask float32 [H,W] in [0,1]. The crop keeps the photo's
    colours inside the box (not whitened); padding is white in rgb and 0 in the mask. The official
    padding is extended by a few rows (top) or columns (right) so the box is exactly 5:3 and one
    ``scale`` maps crop pixels to image pixels: ``x_img = box[0] + x_crop / scale`` (exact when
    ``height`` is a multiple of 5).
    """
    _check(rgb, mask)
    l, t, r, b = person_box(mask)
    w, h = r - l, b - t
    side, top = _official_padding(w, h)
    # the smallest exact 5k x 3k box that holds the official padding: rows go on top, columns right
    k = max(-(-(h + top) // 5), -(-(w + 2 * side) // 3))
    top, left = 5 * k - h, side
    right = 3 * k - w - left
    img = _pad(rgb[t:b, l:r, :3].astype(np.float32) / 255.0, top, left, right, 1.0)
    msk = _pad(mask[t:b, l:r].astype(np.float32), top, left, right, 0.0)
    width = round(height * 3 / 5)
    img = cv2.resize(img, (width, height), interpolation=cv2.INTER_AREA)
    msk = cv2.resize(msk, (width, height), interpolation=cv2.INTER_AREA)
    box = (float(l - left), float(t - top), float(r + right), float(b))
    scale = height / (box[3] - box[1])
    H, W = mask.shape
    border = {"left": -box[0] * scale, "right": (W - box[0]) * scale, "top": -box[1] * scale,
              "bottom": (H - box[1]) * scale}
    return PersonCrop(rgb=np.clip(img, 0.0, 1.0), mask=np.clip(msk, 0.0, 1.0), box=box, scale=scale,
                      cut={side: border[side] for side in cut_edges(mask)})


def _center_crop_according_to_mask(img: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The runner's centre crop: symmetric about the image centre, covering ``mask > 0``, 5:3."""
    ys, xs = np.nonzero(mask > 0)
    cx, cy = img.shape[1] // 2, img.shape[0] // 2
    half_w = max(abs(cx - xs.min()), abs(cx - xs.max()))
    half_h = max(abs(cy - ys.min()), abs(cy - ys.max()))
    raw_w, raw_h = half_w, half_h
    if half_h / half_w >= ASPECT:
        half_w = round(half_h / ASPECT)
    else:
        half_h = round(half_w * ASPECT)
    if half_h > cy:
        half_w, half_h = round(raw_h / ASPECT), raw_h
    if half_w > cx:
        half_h, half_w = round(raw_w * ASPECT), raw_w
    y0, x0 = cy - half_h, cx - half_w
    return img[y0:y0 + 2 * half_h, x0:x0 + 2 * half_w], mask[y0:y0 + 2 * half_h, x0:x0 + 2 * half_w]


def body_input_size(source_size: int) -> tuple[int, int]:
    """(height, width) of the body image for a model's source size: 1694x1022 for 1024, 840x504 for 512."""
    return int(source_size * ASPECT / 14) * 14, int(source_size / 14) * 14


def lhm_inputs(rgb: np.ndarray, mask: np.ndarray, head_box, source_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two images the official runner feeds the LHM network: body [1,3,H,W] and head [1,3,112,112], in [0,1].

    Body (§4.1 steps 2-8): LHM box and 5:3 padding, white background where ``mask <= 0.5``, longest
    side to 896 (INTER_AREA), the centre crop by mask, then ``body_input_size(source_size)``.
    Head (§4.2): from the original rgb (background kept), the square of side ``sqrt(w*h)*1.65``
    around ``head_box`` (x0, y0, x1, y1 in image pixels, e.g. the body fit's head box mapped back),
    clipped to the image, resized to 112x112 (INTER_AREA); zeros when the box is empty or None.
    """
    _check(rgb, mask)
    l, t, r, b = person_box(mask)
    side, top = _official_padding(r - l, b - t)
    img = _pad(rgb[t:b, l:r, :3], top, side, side, 255).astype(np.float64) / 255.0
    msk = (_pad(mask[t:b, l:r].astype(np.float64), top, side, side, 0.0) > 0.5).astype(np.float32)
    img = img * msk[..., None] + (1.0 - msk[..., None])

    def keep_aspect(a: np.ndarray) -> np.ndarray:
        size = long_side_size(a.shape[1], a.shape[0], BODY_MAX_SIZE, upscale=True)
        return cv2.resize(a, size, interpolation=cv2.INTER_AREA)

    img, msk = _center_crop_according_to_mask(keep_aspect(img), keep_aspect(msk))
    out_h, out_w = body_input_size(source_size)
    img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_AREA)
    body = torch.from_numpy(img).float().permute(2, 0, 1)[None]
    return body, head_image(rgb, head_box)


def head_image(rgb: np.ndarray, head_box) -> torch.Tensor:
    """The LHM head image [1,3,112,112] in [0,1] for ``head_box`` in image pixels (zeros without a box)."""
    head = np.zeros((HEAD_SIZE, HEAD_SIZE, 3), dtype=np.uint8)
    if head_box is not None:
        x0, y0, x1, y1 = (float(v) for v in head_box)
        side = math.sqrt(max(x1 - x0, 0.0) * max(y1 - y0, 0.0)) * HEAD_EXPAND
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        # .long() truncates towards zero; the runner does not clip negative starts (they wrap), we do
        H, W = rgb.shape[:2]
        xa, xb = (min(max(int(v), 0), W) for v in (cx - side / 2, cx + side / 2))
        ya, yb = (min(max(int(v), 0), H) for v in (cy - side / 2, cy + side / 2))
        if xb > xa and yb > ya:
            head = cv2.resize(np.ascontiguousarray(rgb[ya:yb, xa:xb, :3]), (HEAD_SIZE, HEAD_SIZE),
                              interpolation=cv2.INTER_AREA)
    return torch.from_numpy(head / 255.0).float().permute(2, 0, 1)[None]
