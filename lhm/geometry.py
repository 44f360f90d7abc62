"""Rotation and rigid-transform math (quaternions w-first, axis-angle, 4x4 transforms).

Conventions follow pytorch3d and the smplx package, which the official LHM code uses, so that
posing gives the same numbers without either dependency.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def axis_angle_to_quaternion(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle [...,3] to unit quaternions [...,4] (w, x, y, z)."""
    angle = aa.norm(dim=-1, keepdim=True)
    half = 0.5 * angle
    small = angle.abs() < 1e-6
    # sin(x/2)/x by Taylor expansion near 0 keeps gradients finite at the zero rotation
    sin_half_over_angle = torch.where(small, 0.5 - angle * angle / 48, torch.sin(half) / torch.where(small, torch.ones_like(angle), angle))
    return torch.cat([torch.cos(half), aa * sin_half_over_angle], dim=-1)


def quaternion_to_matrix(q: torch.Tensor) -> torch.Tensor:
    """Quaternions [...,4] (w, x, y, z; need not be unit) to rotation matrices [...,3,3]."""
    w, x, y, z = q.unbind(-1)
    two_s = 2.0 / (q * q).sum(-1)
    m = torch.stack([
        1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
        two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
        two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
    ], dim=-1)
    return m.reshape(q.shape[:-1] + (3, 3))


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """Axis-angle [...,3] to rotation matrices [...,3,3] (through the quaternion, as pytorch3d)."""
    return quaternion_to_matrix(axis_angle_to_quaternion(aa))


def _sqrt_positive(x: torch.Tensor) -> torch.Tensor:
    # sqrt with a zero (not NaN) gradient at 0
    out = torch.zeros_like(x)
    pos = x > 0
    out[pos] = torch.sqrt(x[pos])
    return out


def matrix_to_quaternion(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [...,3,3] to quaternions [...,4] (w, x, y, z) with w >= 0.

    Picks the best-conditioned of the four candidate formulas per matrix, so it stays accurate for
    every rotation; for a non-orthonormal matrix (a blend of rotations) it gives a nearby rotation.
    """
    batch = m.shape[:-2]
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = m.reshape(batch + (9,)).unbind(-1)
    q_abs = _sqrt_positive(torch.stack([
        1.0 + m00 + m11 + m22, 1.0 + m00 - m11 - m22, 1.0 - m00 + m11 - m22, 1.0 - m00 - m11 + m22,
    ], dim=-1))
    candidates = torch.stack([
        torch.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], dim=-1),
    ], dim=-2)
    candidates = candidates / (2.0 * q_abs[..., None].clamp_min(0.1))
    best = q_abs.argmax(dim=-1)
    q = torch.gather(candidates, -2, best[..., None, None].expand(batch + (1, 4)))[..., 0, :]
    return standardize_quaternion(q)


def standardize_quaternion(q: torch.Tensor) -> torch.Tensor:
    """Flip quaternions to the w >= 0 hemisphere."""
    return torch.where(q[..., :1] < 0, -q, q)


def quaternion_multiply(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a*b of (w, x, y, z) quaternions, standardised to w >= 0."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    q = torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)
    return standardize_quaternion(q)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """Rotation matrices [...,3,3] to axis-angle [...,3]."""
    q = matrix_to_quaternion(m)
    norm = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(norm, q[..., :1])
    small = angle.abs() < 1e-6
    scale = torch.where(small, 2.0 + angle * angle / 12, angle / torch.where(small, torch.ones_like(norm), norm))
    return q[..., 1:] * scale


def batch_rigid_transform(rot: torch.Tensor, joints: torch.Tensor, parents) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward kinematics of a skeleton, as ``smplx.lbs.batch_rigid_transform``.

    rot [...,J,3,3] local rotations, joints [...,J,3] rest joint positions, parents (J,) with -1
    for the root. Returns posed joints [...,J,3] and relative transforms A [...,J,4,4] with
    ``A_k [v;1] = R_k^glob (v - J_k) + posed J_k``, the transforms linear blend skinning blends.
    """
    parents = torch.as_tensor(parents, dtype=torch.long)
    rel = joints.clone()
    rel[..., 1:, :] = joints[..., 1:, :] - joints[..., parents[1:], :]
    local = _make_transform(rot, rel)
    chain = [local[..., 0, :, :]]
    for k in range(1, joints.shape[-2]):
        chain.append(chain[int(parents[k])] @ local[..., k, :, :])
    glob = torch.stack(chain, dim=-3)
    posed_joints = glob[..., :3, 3]
    # subtract the rotated rest joint so A maps rest-space vertices, not joint-relative ones
    offset = (glob[..., :3, :3] @ joints[..., None])[..., 0]
    A = glob.clone()
    A[..., :3, 3] = glob[..., :3, 3] - offset
    return posed_joints, A


def _make_transform(R: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = torch.zeros(top.shape[:-2] + (1, 4), dtype=R.dtype, device=R.device)
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def transform_points(T: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Apply 4x4 transforms T [...,4,4] to points p [...,3] (broadcasting)."""
    return (T[..., :3, :3] @ p[..., None])[..., 0] + T[..., :3, 3]


def normalize_quaternion(q: torch.Tensor) -> torch.Tensor:
    """L2-normalise quaternions along the last axis."""
    return F.normalize(q, dim=-1)
