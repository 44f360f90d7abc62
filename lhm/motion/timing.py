"""Editing motions in time and space: resample, trim, loop, mirror.

Every operation returns a new Motion. Frames in between source frames are blended by one helper:
slerp on joint rotations, linear on translation and expression, nearest on foot contacts; a
per-frame camera is blended the same way (rotation slerp, centre and intrinsics linear).
"""
from __future__ import annotations

import math

import torch

from ..body import skeleton
from ..geometry import axis_angle_to_quaternion, matrix_to_quaternion, quaternion_to_matrix
from ..render.camera import Camera
from .motion import REST_PELVIS, Motion, split_full_pose
from .curves import quaternion_to_axis_angle, slerp

# axis-angle of a rotation seen in a world mirrored across the x = 0 plane
_MIRROR_AXIS_ANGLE = (1.0, -1.0, -1.0)


def _blend(m: Motion, i0: torch.Tensor, i1: torch.Tensor, w: torch.Tensor,
           shift0: torch.Tensor | None = None, shift1: torch.Tensor | None = None) -> dict:
    """Fields of frames ``(1-w) m[i0] + w m[i1]`` with translations shifted by ``shift0/1`` [F,3]."""
    q = axis_angle_to_quaternion(m.full_pose())
    pose = quaternion_to_axis_angle(slerp(q[i0], q[i1], w[:, None]))
    t0, t1 = m.trans[i0], m.trans[i1]
    if shift0 is not None:
        t0 = t0 + shift0
    if shift1 is not None:
        t1 = t1 + shift1
    out = split_full_pose(pose) | {"trans": torch.lerp(t0, t1, w[:, None])}
    if m.expr is not None:
        out["expr"] = torch.lerp(m.expr[i0], m.expr[i1], w[:, None])
    if m.contacts is not None:
        out["contacts"] = torch.where((w < 0.5)[:, None], m.contacts[i0], m.contacts[i1])
    cam = m.camera
    if cam is not None and len(cam.batch_shape):
        cam = _blend_cameras(cam, i0, i1, w)
    out["camera"] = cam
    return out


def _blend_cameras(cam: Camera, i0: torch.Tensor, i1: torch.Tensor, w: torch.Tensor) -> Camera:
    n = len(cam)
    cam = Camera(cam.K.expand(n, 3, 3), cam.viewmat.expand(n, 4, 4), cam.width, cam.height)
    R = cam.viewmat[:, :3, :3]
    q = slerp(matrix_to_quaternion(R[i0]), matrix_to_quaternion(R[i1]), w)
    centre = torch.lerp(cam.center[i0], cam.center[i1], w[:, None])
    V = torch.zeros(len(w), 4, 4, dtype=cam.viewmat.dtype)
    V[:, :3, :3] = quaternion_to_matrix(q)
    V[:, :3, 3] = -(V[:, :3, :3] @ centre[..., None])[..., 0]
    V[:, 3, 3] = 1.0
    K = torch.lerp(cam.K[i0], cam.K[i1], w[:, None, None])
    return Camera(K, V, cam.width, cam.height)


def cycle_drift(m: Motion) -> torch.Tensor:
    """Horizontal (x, z) translation gained per cycle by a looping motion (zero otherwise) [3].

    The frame after the last would be frame 0 moved by the drift: a walk cycle advances by its
    stride, an in-place loop by nothing. Estimated by extrapolating the last step.
    """
    drift = torch.zeros(3, dtype=m.trans.dtype)
    if m.loops and len(m) >= 2:
        step = 2 * m.trans[-1] - m.trans[-2] - m.trans[0]
        drift[[0, 2]] = step[[0, 2]]
    return drift


def resample(m: Motion, fps: float) -> Motion:
    """The motion at ``fps`` frames per second.

    A non-looping motion keeps its first and last instant; a looping one keeps whole periods
    (its frame count is rounded, stretching the period by less than half a frame).
    """
    if not (fps > 0 and math.isfinite(fps)):
        raise ValueError(f"fps must be a positive number, got {fps}")
    F = len(m)
    if m.loops:
        n = max(1, round(F * fps / m.fps))
        pos = torch.arange(n, dtype=torch.float64) * (F / n)
    else:
        n = int(math.floor((F - 1) * fps / m.fps + 1e-6)) + 1
        pos = torch.arange(n, dtype=torch.float64) * (m.fps / fps)
    i0 = pos.floor().long().clamp(max=F - 1)
    w = (pos - i0).to(m.trans.dtype)
    i1 = i0 + 1
    # past the last frame of a loop comes frame 0, moved on by one cycle
    wrapped = i1 >= F
    shift1 = wrapped[:, None] * cycle_drift(m)
    i1 = torch.where(wrapped, i1 - F if m.loops else torch.full_like(i1, F - 1), i1)
    return m.replace(**_blend(m, i0, i1, w, shift1=shift1), fps=float(fps))


def trim(m: Motion, start: int = 0, stop: int | None = None) -> Motion:
    """Frames ``start`` (inclusive) to ``stop`` (exclusive), Python slice semantics for negatives."""
    frames = range(len(m))[start:stop]
    if len(frames) == 0:
        raise ValueError(f"trimming {len(m)} frames to [{start}:{stop}] leaves no frame")
    return m.select(slice(frames.start, frames.stop))


def loop(m: Motion, duration: float, crossfade: float = 0.5) -> Motion:
    """Repeat the motion to ``duration`` seconds (shorter durations trim it).

    A looping motion repeats seamlessly, carrying its horizontal drift on (a walk keeps walking).
    Otherwise consecutive repeats overlap by ``crossfade`` seconds, blended so the end of one
    flows into the start of the next (translation blends too, so a non-looping walk slides back).
    """
    n = round(duration * m.fps)
    F = len(m)
    if n < 1:
        raise ValueError(f"looping to {duration} s at {m.fps} fps gives no frame")
    if n <= F:
        return trim(m, 0, n)
    j = torch.arange(n)
    if m.loops:
        cycle = j // F
        i0 = j % F
        fields = _blend(m, i0, i0, torch.zeros(n), shift0=cycle[:, None] * cycle_drift(m))
        return m.replace(**fields, loops=n % F == 0)
    c = min(round(crossfade * m.fps), F // 2)
    period = F - c
    cycle, r = j // period, j % period
    fading = (cycle > 0) & (r < c)
    # frames r < c of every repeat after the first fade in over the tail of the previous repeat
    i0 = torch.where(fading, period + r, r)
    w = torch.where(fading, (r + 1).to(m.trans.dtype) / (c + 1), torch.ones(n))
    return m.replace(**_blend(m, i0, r, w), loops=False)


def mirror(m: Motion) -> Motion:
    """Left and right swapped, as seen in a mirror on the x = 0 plane (body's left is +x).

    Joint rotations move to the mirrored joint and reflect as axis-angle (x, y, z) -> (x, -y, -z);
    the pelvis path reflects about x = 0 (trans x -> -x - 2 J0x, J0 = REST_PELVIS); foot contacts
    swap; a camera is mirrored so its image is the horizontal flip of the original. Expression
    coefficients are kept as they are (their basis has no left/right map).
    """
    flip = torch.tensor(_MIRROR_AXIS_ANGLE, dtype=m.trans.dtype)
    pose = m.full_pose()[:, list(skeleton.mirror_index())] * flip
    trans = m.trans.clone()
    trans[:, 0] = -trans[:, 0] - 2 * REST_PELVIS[0]
    changes = split_full_pose(pose) | {"trans": trans}
    if m.contacts is not None:
        changes["contacts"] = m.contacts.flip(-1)
    if m.camera is not None:
        changes["camera"] = mirror_camera(m.camera)
    return m.replace(**changes)


def mirror_camera(cam: Camera) -> Camera:
    """The camera that sees the x-mirrored world as the horizontally flipped image."""
    S = torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=cam.viewmat.dtype))
    K = cam.K.clone()
    K[..., 0, 2] = cam.width - K[..., 0, 2]
    # reflect the world (right factor) and the camera's x (left factor): a proper rotation again
    return Camera(K, S @ cam.viewmat @ S, cam.width, cam.height)


__all__ = ["resample", "trim", "loop", "mirror", "mirror_camera", "cycle_drift"]
