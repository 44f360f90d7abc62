"""Camera helpers: frame a body (or a whole animation) from a viewing direction, and orbit paths.

World convention of the project: y up, the body faces +z, so the "front" camera sits on +z and
looks towards -z; "left"/"right" are the subject's left (+x) and right (-x).
"""
from __future__ import annotations

import math

import torch

from .camera import Camera

# name -> (direction from the target towards the camera, image up vector)
DIRECTIONS = {
    "front": ((0.0, 0.0, 1.0), (0.0, 1.0, 0.0)),
    "back": ((0.0, 0.0, -1.0), (0.0, 1.0, 0.0)),
    "left": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "right": ((-1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "top": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "bottom": ((0.0, -1.0, 0.0), (0.0, 0.0, 1.0)),
}


def _rotation(direction: torch.Tensor, up) -> torch.Tensor:
    # world-to-camera rotation(s) of a camera looking along -direction, as Camera.look_at builds it
    return Camera.look_at(direction, torch.zeros_like(direction), 1, 1, up=up).viewmat[..., :3, :3]


def _distance(local: torch.Tensor, K: torch.Tensor, margin: float) -> torch.Tensor:
    """Distance from the target at which points with camera-aligned offsets ``local`` [...,N,3] all fit.

    A point at camera coordinates (u, v, w + d) lies inside the image, shrunk by ``margin`` of its
    size on every side, when |u| <= tan_x (w + d) and |v| <= tan_y (w + d).
    """
    u, v, w = local.unbind(-1)
    shrink = 1.0 - 2.0 * margin
    need = torch.maximum(u.abs() / (shrink * K[0, 2] / K[0, 0]), v.abs() / (shrink * K[1, 2] / K[1, 1])) - w
    return need.amax(-1)


def frame_points(points: torch.Tensor, width: int, height: int, direction="front", fov_y_deg: float = 30.0,
                 margin: float = 0.05, up=None) -> Camera:
    """One camera that sees every point of ``points`` [...,N,3] (e.g. an animation [F,N,3]).

    ``direction`` is a name from DIRECTIONS or a 3-vector from the subject towards the camera;
    ``margin`` is the fraction of the image width/height kept free on each side.
    """
    if isinstance(direction, str):
        direction, default_up = DIRECTIONS[direction]
        up = default_up if up is None else up
    up = (0.0, 1.0, 0.0) if up is None else up
    direction = torch.nn.functional.normalize(torch.as_tensor(direction, dtype=torch.float32), dim=-1)
    pts = points.detach().to(torch.float32).reshape(-1, 3)
    R = _rotation(direction, up)
    K = Camera.intrinsics(width, height, fov_y_deg=fov_y_deg)
    centre = (pts.amax(0) + pts.amin(0)) / 2
    local = (pts - centre) @ R.T
    # centre the extent laterally in the image, then back off until the widest point fits
    shift = (local[:, :2].amax(0) + local[:, :2].amin(0)) / 2
    local[:, :2] -= shift
    dist = _distance(local, K, margin)
    target = centre + shift @ R[:2]
    return Camera.look_at(target + dist * direction, target, width, height, fov_y_deg=fov_y_deg, up=up)


def orbit_cameras(target, radius: float, n_views: int, width: int, height: int, elevation_deg: float = 0.0,
                  fov_y_deg: float = 30.0, start_azimuth_deg: float = 0.0) -> Camera:
    """A batched Camera [n_views] on a circle around ``target`` (turntable), y up.

    Azimuth 0 is the front (+z); views advance towards the subject's left (+x) in equal steps;
    ``elevation_deg`` raises the circle above the target's horizontal plane.
    """
    target = torch.as_tensor(target, dtype=torch.float32)
    az = torch.deg2rad(start_azimuth_deg + torch.arange(n_views, dtype=torch.float32) * (360.0 / n_views))
    el = math.radians(elevation_deg)
    offset = torch.stack([math.cos(el) * torch.sin(az), torch.full_like(az, math.sin(el)),
                          math.cos(el) * torch.cos(az)], dim=-1)
    return Camera.look_at(target + radius * offset, target.expand(n_views, 3), width, height, fov_y_deg=fov_y_deg)


def turntable(points: torch.Tensor, n_views: int, width: int, height: int, elevation_deg: float = 0.0,
              fov_y_deg: float = 30.0, margin: float = 0.05) -> Camera:
    """An orbit around the centre of ``points`` [...,N,3] whose radius keeps them in every view."""
    pts = points.detach().to(torch.float32).reshape(-1, 3)
    centre = (pts.amax(0) + pts.amin(0)) / 2
    probe = orbit_cameras(centre, 1.0, n_views, 1, 1, elevation_deg)
    local = (pts - centre) @ probe.viewmat[:, :3, :3].transpose(-1, -2)  # [n_views,N,3]
    dist = _distance(local, Camera.intrinsics(width, height, fov_y_deg=fov_y_deg), margin)
    return orbit_cameras(centre, float(dist.max()), n_views, width, height, elevation_deg, fov_y_deg)
