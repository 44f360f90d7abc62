"""Cameras for rendering a motion: the motion's own, a fixed front view, a tracking view, an orbit.

``motion_camera`` poses the body (or avatar) through the whole motion and frames every posed
point in every frame, using the framing helpers of ``lhm.render.cameras``. Only the convex hull
of each frame's points matters for framing (a perspective image of a convex set is the convex
set of the images), which keeps long motions on dense avatars cheap.
"""
from __future__ import annotations

import warnings

import torch

from ..render.camera import Camera
from ..render.cameras import frame_points, turntable
from .motion import Motion

MODES = ("auto", "front", "orbit", "motion")
DEFAULT_SIZE = 512
TRACK_THRESHOLD = 0.5  # metres of pelvis travel beyond which the auto camera follows the body
TRACK_SMOOTHING = 0.5  # seconds: the tracking camera glides over steps and sways
_CHUNK = 16  # frames posed at once (bounds memory on dense avatars)


def motion_camera(motion: Motion, body_or_avatar=None, mode: str = "auto", width: int | None = None,
                  height: int | None = None, fov_y_deg: float = 30.0, margin: float = 0.05,
                  direction="front") -> Camera:
    """A camera per frame (batch [F]) for rendering ``motion`` on a Body or Avatar (default: the free body).

    - ``"motion"``: the motion's own camera (e.g. an LHM motion's), resized to width x height.
    - ``"front"``: one fixed front camera that sees the body in every frame.
    - ``"orbit"``: a turntable circling the body once over the motion.
    - ``"auto"``: the motion's camera when it has one (zoomed out only if the body would leave the
      image); otherwise the front camera, which follows the body when it travels (walk, run).

    ``width``/``height`` default to the motion camera's size, else 512 x 512. ``margin`` is the
    fraction of the image kept free on each side when framing. ``direction`` turns the front and
    auto views to another side (a name of ``lhm.render.cameras.DIRECTIONS`` or a 3-vector from
    the body towards the camera).
    """
    if mode not in MODES:
        raise ValueError(f"unknown camera mode '{mode}'; choose one of {', '.join(MODES)}")
    own = motion.camera
    if mode == "motion":
        if own is None:
            raise ValueError(f"motion '{motion.name}' has no camera of its own; use mode 'auto', 'front' or 'orbit'")
        return _per_frame(_resize(own, width, height), len(motion))
    default = (own.width, own.height) if own is not None else (DEFAULT_SIZE, DEFAULT_SIZE)
    size = (width or default[0], height or default[1])
    hulls = _frame_hulls(motion, body_or_avatar)
    if mode == "auto" and own is not None:
        cam = _resize(own, *size)
        # the official framing stays as it is unless the body would leave the image
        fitted = _zoom_to_fit(_per_frame(cam, len(motion)), hulls, margin=0.0)
        if fitted is not None:
            return fitted
        warnings.warn(f"the body goes behind motion '{motion.name}''s own camera; using a front camera", stacklevel=2)
    if mode == "orbit":
        return turntable(torch.cat(hulls), len(motion), *size, fov_y_deg=fov_y_deg, margin=margin)
    shift = _tracking_shift(motion) if mode == "auto" else torch.zeros(len(motion), 3)
    centred = torch.cat([h - s for h, s in zip(hulls, shift)])
    cam = frame_points(centred, *size, direction=direction, fov_y_deg=fov_y_deg, margin=margin)
    V = cam.viewmat.expand(len(motion), 4, 4).clone()
    # a camera moved by s sees p as the unmoved camera sees p - s
    V[:, :3, 3] -= (V[:, :3, :3] @ shift[..., None])[..., 0]
    return Camera(cam.K.expand(len(motion), 3, 3).clone(), V, *size)


def _per_frame(cam: Camera, n: int) -> Camera:
    return Camera(cam.K.expand(n, 3, 3).clone(), cam.viewmat.expand(n, 4, 4).clone(), cam.width, cam.height)


def _resize(cam: Camera, width: int | None, height: int | None) -> Camera:
    """The camera on a width x height image: scaled to fit, centred, the same view direction."""
    width, height = width or cam.width, height or cam.height
    if (width, height) == (cam.width, cam.height):
        return cam
    s = min(width / cam.width, height / cam.height)
    K = cam.K.clone()
    K[..., :2, :] *= s
    K[..., 2, 2] = 1.0
    K[..., 0, 2] += (width - cam.width * s) / 2
    K[..., 1, 2] += (height - cam.height * s) / 2
    return Camera(K, cam.viewmat, width, height)


def _zoom_to_fit(cam: Camera, hulls: list[torch.Tensor], margin: float) -> Camera | None:
    """``cam`` with its focal length shrunk just enough (never grown) that every point is inside;
    None when a point is behind the camera, which no zoom can fix."""
    scale = 1.0
    size = torch.tensor([cam.width, cam.height], dtype=cam.K.dtype)
    for f, pts in enumerate(hulls):
        view = cam[f]
        if bool((view.world_to_camera(pts)[:, 2] < 0.05).any()):
            return None
        c = view.K[:2, 2]
        off = view.project(pts) - c  # pixel offsets from the principal point
        room = torch.where(off > 0, (1 - margin) * size - c, c - margin * size)
        scale = min(scale, float((room / off.abs().clamp_min(1e-9)).min()))
    if scale <= 0:
        return None
    K = cam.K.clone()
    K[:, 0, 0] *= scale
    K[:, 1, 1] *= scale
    return Camera(K, cam.viewmat, cam.width, cam.height)


def _tracking_shift(motion: Motion) -> torch.Tensor:
    """Horizontal camera offsets [F,3]: zero for motions in place, the smoothed path of travellers."""
    path = motion.trans.detach().to(torch.float32).clone()
    path[:, 1] = 0.0
    if float((path.amax(0) - path.amin(0)).norm()) < TRACK_THRESHOLD:
        return torch.zeros_like(path)
    sigma = TRACK_SMOOTHING * motion.fps
    radius = int(3 * sigma)
    k = torch.exp(-0.5 * (torch.arange(-radius, radius + 1) / sigma) ** 2)
    k = k / k.sum()
    padded = torch.cat([path[:1].expand(radius, 3), path, path[-1:].expand(radius, 3)])
    smooth = torch.nn.functional.conv1d(padded.T[:, None], k[None, None])[:, 0].T
    return smooth - smooth.mean(0)


def posed_points(motion: Motion, body_or_avatar=None) -> torch.Tensor:
    """Posed vertices (Body) or Gaussian centres (Avatar) [F,N,3] for every frame of ``motion``."""
    return torch.stack(list(_posed_chunks(motion, body_or_avatar, hull=False)))


def _frame_hulls(motion: Motion, body_or_avatar) -> list[torch.Tensor]:
    return list(_posed_chunks(motion, body_or_avatar, hull=True))


def _posed_chunks(motion: Motion, body_or_avatar, hull: bool):
    from ..avatar import Avatar
    from ..body import load_body

    subject = load_body("free") if body_or_avatar is None else body_or_avatar
    for start in range(0, len(motion), _CHUNK):
        part = motion.select(slice(start, start + _CHUNK))
        with torch.no_grad():
            if isinstance(subject, Avatar):
                pts = subject.pose(part).means
            else:
                pts = subject.pose(part.full_pose().to(subject.vertices.dtype), transl=part.trans).vertices
        for p in pts.to(torch.float32):
            yield _hull(p) if hull else p


def _hull(points: torch.Tensor) -> torch.Tensor:
    """The convex-hull vertices of a point set (all points if the hull cannot be built)."""
    from scipy.spatial import ConvexHull, QhullError

    try:
        return points[torch.as_tensor(ConvexHull(points.numpy()).vertices)]
    except (QhullError, ValueError):
        return points
