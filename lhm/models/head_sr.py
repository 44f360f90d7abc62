"""Head super-resolution before DINOv2: a pluggable callable, with a bicubic fallback.

The official pipeline restores the 112x112 head crop with GFPGAN v1.3 + RealESRGAN x4plus to
448x448 (reference §2.4, §7.3). Those weights are not part of this package; any callable
``[B,3,112,112] in [0,1] -> [B,3,448,448] in [0,1]`` can be passed instead. Without one the
fallback upsamples bicubically and says so once, loudly.
"""
from __future__ import annotations

import logging
from typing import Callable

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

HeadSuperResolution = Callable[[torch.Tensor], torch.Tensor]


class BicubicHeadSR:
    """Fallback head super-resolution: bicubic upsampling to ``size`` (448), clamped to [0,1]."""

    def __init__(self, size: int = 448):
        self.size = size
        log.warning("Face super-resolution weights (GFPGAN v1.3 + RealESRGAN x4plus) are not available: the head "
                    "crop is upsampled to %dx%d bicubically instead, so the face will be less detailed than with "
                    "the official pipeline. Pass head_sr=<callable [B,3,112,112] -> [B,3,448,448]> to use a real "
                    "face restorer.", size, size)

    def __call__(self, head_image: torch.Tensor) -> torch.Tensor:
        return F.interpolate(head_image, size=(self.size, self.size), mode="bicubic", align_corners=False).clamp(0.0, 1.0)
