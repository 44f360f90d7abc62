"""Differentiable Gaussian splatting: ``render(gaussians, camera)`` on CPU (numba) or CUDA (gsplat).

Image formation (gsplat's classic 3DGS mode, the same on both devices): OpenCV pinhole camera;
EWA projection of the 3D covariance (Jacobian taken at the mean clamped to 1.3x the field of
view) plus a 0.3-pixel low-pass on the 2D covariance diagonal, without opacity compensation;
Gaussians in front of the 0.01 near plane only; pixel centres at +0.5; alpha = min(0.999,
opacity * exp(-power)) with contributions below 1/255 skipped, which bounds every splat to its
opacity-aware ellipse (at most 3.33 sigma, gsplat's extent); front-to-back compositing in
camera-z order, each pixel stopping before the splat that would bring its transmittance to 1e-4
or below; background blended with weight 1 - alpha. SH colours are evaluated along the ray from
the camera centre to the mean, as colour = SH . basis + 0.5 clamped at 0.

Gradients reach means, quats, scales, opacities, colours (RGB or SH) and the background; the
camera is treated as constant.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..gaussians import Gaussians
from . import cpu
from .camera import Camera
from .cameras import DIRECTIONS, frame_points, orbit_cameras, turntable

__all__ = ["render", "RenderOutput", "Camera", "frame_points", "orbit_cameras", "turntable", "DIRECTIONS"]


@dataclass
class RenderOutput:
    """Rendered images with the broadcast batch shape of the Gaussians and the camera in front.

    rgb [...,H,W,3] with the background blended in; alpha [...,H,W,1] (1 - final transmittance,
    shaped to broadcast against rgb); depth [...,H,W] expected camera-z depth of the splats
    (accumulated depth / alpha; 0 where nothing was drawn).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def _select_backend(device: torch.device):
    """The rasterizer for tensors on ``device``: gsplat for CUDA, our numba kernels otherwise."""
    if device.type == "cuda":
        from . import cuda
        return cuda.rasterize
    return cpu.rasterize


def render(gaussians: Gaussians, camera: Camera, background=0.0, *, sh_degree: int | None = None,
           near_plane: float = 0.01, eps2d: float = 0.3) -> RenderOutput:
    """Render Gaussians through camera(s); differentiable w.r.t. every Gaussian field and the background.

    Batch shapes broadcast: Gaussians [F] with a Camera [F] renders frame i through camera i, and
    either side may be unbatched. ``background`` is a scalar, an RGB triple or a tensor [...,3]
    broadcastable to the batch. SH colours use all their bands unless ``sh_degree`` is lower.
    Returns a RenderOutput with leading batch shape broadcast(gaussians, camera).
    """
    device, dtype = gaussians.means.device, gaussians.means.dtype
    batch = torch.broadcast_shapes(gaussians.batch_shape, camera.batch_shape)
    B = math.prod(batch)
    if gaussians.sh_degree is None:
        if sh_degree is not None:
            raise ValueError("sh_degree given but the colours are RGB, not SH coefficients")
    else:
        sh_degree = gaussians.sh_degree if sh_degree is None else sh_degree
        if not 0 <= sh_degree <= min(gaussians.sh_degree, 3):
            raise ValueError(f"sh_degree must be in 0..{min(gaussians.sh_degree, 3)}, got {sh_degree}")

    def flat(t: torch.Tensor, tail: int) -> torch.Tensor:
        # unbatched Gaussians keep a leading axis of 1 so the backends broadcast them over cameras
        if not gaussians.batch_shape:
            return t[None]
        return t.expand(*batch, *t.shape[-tail:]).reshape(B, *t.shape[-tail:])

    g = gaussians
    color_tail = 2 if g.sh_degree is None else 3
    viewmats = camera.viewmat.to(device, dtype).expand(*batch, 4, 4).reshape(B, 4, 4)
    Ks = camera.K.to(device, dtype).expand(*batch, 3, 3).reshape(B, 3, 3)
    bg = torch.as_tensor(background, device=device, dtype=dtype).expand(*batch, 3).reshape(B, 3)
    rasterize = _select_backend(device)
    rgb, alpha, depth = rasterize(
        flat(g.means, 2), flat(g.quats, 2), flat(g.scales, 2), flat(g.opacities, 1), flat(g.colors, color_tail),
        viewmats, Ks, camera.width, camera.height, bg, sh_degree=sh_degree, near_plane=near_plane, eps2d=eps2d)
    H, W = camera.height, camera.width
    return RenderOutput(rgb.reshape(*batch, H, W, 3), alpha.reshape(*batch, H, W, 1), depth.reshape(*batch, H, W))
