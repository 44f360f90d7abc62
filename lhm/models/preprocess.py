"""The network's own image transforms: white pad-to-square and kornia 0.7.2's anti-aliased resize.

Both encoders pad the image to a square with 1.0 and then call
``kornia.geometry.resize(..., interpolation="bicubic", align_corners=True, antialias=True)``
(reference §2.3, §2.4, §7.2). This module reproduces that resize without kornia: a separable
Gaussian pre-blur with reflect padding when (and only when) downscaling (§9), then bicubic
``F.interpolate`` with ``align_corners=True``. Photo cropping and segmentation live elsewhere
(``lhm.preprocess``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def pad_to_square(image: torch.Tensor, value: float = 1.0) -> torch.Tensor:
    """Pad [B,C,H,W] to a square of side max(H,W): left/top get pad//2, right/bottom the rest."""
    h, w = image.shape[-2:]
    side = max(h, w)
    pad_h, pad_w = side - h, side - w
    if pad_h == 0 and pad_w == 0:
        return image
    return F.pad(image, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)


def gaussian_kernel1d(size: int, sigma: float, dtype=torch.float32, device=None) -> torch.Tensor:
    """Normalised 1D Gaussian of odd ``size`` centred on the middle tap (kornia's get_gaussian_kernel1d)."""
    x = torch.arange(size, dtype=dtype, device=device) - size // 2
    s = torch.tensor(sigma, dtype=dtype, device=device)  # kornia squares sigma in the image dtype
    g = torch.exp(-x.pow(2) / (2 * s.pow(2)))
    return g / g.sum()


def gaussian_blur2d(image: torch.Tensor, kernel_size: tuple[int, int], sigma: tuple[float, float]) -> torch.Tensor:
    """Separable Gaussian blur of [B,C,H,W], reflect-padded (kornia's default border), x pass then y pass."""
    C = image.shape[1]
    ky = gaussian_kernel1d(kernel_size[0], sigma[0], image.dtype, image.device)
    kx = gaussian_kernel1d(kernel_size[1], sigma[1], image.dtype, image.device)
    out = F.pad(image, (kernel_size[1] // 2, kernel_size[1] // 2, 0, 0), mode="reflect")
    out = F.conv2d(out, kx.view(1, 1, 1, -1).expand(C, 1, 1, -1), groups=C)
    out = F.pad(out, (0, 0, kernel_size[0] // 2, kernel_size[0] // 2), mode="reflect")
    return F.conv2d(out, ky.view(1, 1, -1, 1).expand(C, 1, -1, 1), groups=C)


def antialias_params(in_size: int, out_size: int) -> tuple[int, float]:
    """kornia 0.7.2's pre-blur for one axis: sigma = max((factor-1)/2, 0.001), size = max(int(4 sigma), 3) made odd."""
    sigma = max((in_size / out_size - 1.0) / 2.0, 0.001)
    size = int(max(2.0 * 2 * sigma, 3))
    return size + 1 - size % 2, sigma


def resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize of [B,C,H,W] to ``size`` (H,W), align_corners=True, anti-aliased like kornia 0.7.2.

    An image already at ``size`` is returned unchanged; the pre-blur runs (on both axes) only when
    at least one axis shrinks.
    """
    h, w = image.shape[-2:]
    if (h, w) == tuple(size):
        return image
    if h > size[0] or w > size[1]:
        (ky, sy), (kx, sx) = antialias_params(h, size[0]), antialias_params(w, size[1])
        image = gaussian_blur2d(image, (ky, kx), (sy, sx))
    return F.interpolate(image, size=tuple(size), mode="bicubic", align_corners=True)


def square_resize(image: torch.Tensor, resolution: int) -> torch.Tensor:
    """White pad-to-square then the anti-aliased bicubic resize to resolution x resolution (§2.3, §2.4)."""
    return resize(pad_to_square(image, 1.0), (resolution, resolution))
