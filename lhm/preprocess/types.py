"""What preprocessing hands to the engines: the person's crop, its mask, the fitted body and camera."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..render.camera import Camera


@dataclass
class LoadedImage:
    """A decoded photo: rgb [H,W,3] uint8 (orientation fixed, at most ``max_side``), alpha [H,W] float32 or None."""

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)


@dataclass
class Segmentation:
    """The person's mask [H,W] float32 in [0,1] on the loaded image, how it was made, and what to tell the user."""

    mask: np.ndarray
    method: str
    warnings: list[str] = field(default_factory=list)


@dataclass
class PersonCrop:
    """The person cut out at the LHM framing (box x1.1, 5:3, white padding).

    rgb [H,W,3] float32 in [0,1] with the original colours (not whitened); mask [H,W] float32;
    box (x0, y0, x1, y1) of the crop in the loaded image's pixels (may extend past it: padding);
    scale: crop pixels per loaded-image pixel; cut: the sides ("top", "bottom", "left", "right") where the
    person runs out of the photo, each with the crop-pixel coordinate (x for left/right, y for top/bottom) of
    that photo border: beyond it the crop shows padding, not background, so nothing is known there.
    """

    rgb: np.ndarray
    mask: np.ndarray
    box: tuple[float, float, float, float]
    scale: float
    cut: dict[str, float] = field(default_factory=dict)

    def beyond(self, uv: torch.Tensor) -> torch.Tensor:
        """Bool [...]: which crop-pixel points uv [...,2] lie past a cut border, where the photo shows nothing."""
        x, y = uv[..., 0], uv[..., 1]
        out = torch.zeros_like(x, dtype=torch.bool)
        for side, beyond in (("left", lambda c: x < c), ("right", lambda c: x > c), ("top", lambda c: y < c),
                             ("bottom", lambda c: y > c)):
            if side in self.cut:
                out |= beyond(self.cut[side])
        return out

    def known(self, height: int | None = None, width: int | None = None) -> np.ndarray:
        """Bool [height, width] (default: the crop's size): pixels inside the photo or beyond an uncut border."""
        h, w = self.mask.shape
        height, width = height or h, width or w
        # pixel centres of the requested grid, in crop pixels
        ys = (torch.arange(height, dtype=torch.float64) + 0.5) * (h / height)
        xs = (torch.arange(width, dtype=torch.float64) + 0.5) * (w / width)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)
        return (~self.beyond(grid)).numpy()


@dataclass
class BodyFit:
    """The body fitted to the crop.

    camera: the crop's camera (world = the body's frame, y up, metres); full_pose [55,3] axis-angle in
    SMPL-X joint order (root included); betas [B] of the body; transl [3]; head_box (x0, y0, x1, y1) in
    crop pixels; iou: silhouette IoU of the fitted body against the mask.
    """

    camera: Camera
    full_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    head_box: tuple[float, float, float, float]
    iou: float


@dataclass
class PersonImage:
    """Everything the engines need from one photo, plus what the user should be told about it."""

    image: LoadedImage
    segmentation: Segmentation
    crop: PersonCrop
    fit: BodyFit
    warnings: list[str] = field(default_factory=list)
