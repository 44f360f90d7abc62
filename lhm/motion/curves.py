"""Curves for motions: quaternion slerp and keyframe splines, monotone scalar keys, conversions.

Quaternions are w-first, as everywhere in the project. Rotation keys use the Barry-Goldman form
of the Catmull-Rom spline, whose every step is a linear blend: with ``slerp`` as the blend it
interpolates rotations smoothly with the key times as knots. Scalar keys (envelopes, heights)
use a monotone cubic, which never overshoots a key.
"""
from __future__ import annotations

import torch

from ..geometry import axis_angle_to_quaternion, standardize_quaternion

__all__ = ["quaternion_to_axis_angle", "quat_conjugate", "quat_mul", "slerp",
           "align_hemispheres", "catmull_rom", "rotation_keys", "scalar_keys"]


def quat_conjugate(q: torch.Tensor) -> torch.Tensor:
    """The inverse of unit quaternions [...,4]."""
    return q * q.new_tensor([1.0, -1.0, -1.0, -1.0])


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product a*b, without the w >= 0 standardisation (keeps sign continuity)."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([
        aw * bw - ax * bx - ay * by - az * bz,
        aw * bx + ax * bw + ay * bz - az * by,
        aw * by - ax * bz + ay * bw + az * bx,
        aw * bz + ax * by - ay * bx + az * bw,
    ], dim=-1)


def quaternion_to_axis_angle(q: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [...,4] to rotation vectors [...,3] with angles in [0, pi]."""
    q = standardize_quaternion(q)
    norm = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(norm, q[..., :1])
    small = norm < 1e-7
    # angle/sin(angle/2) -> 2 as the angle goes to 0
    scale = torch.where(small, torch.full_like(norm, 2.0), angle / torch.where(small, torch.ones_like(norm), norm))
    return q[..., 1:] * scale


def _log(q: torch.Tensor) -> torch.Tensor:
    # rotation vector of q without forcing w >= 0: keeps the short/long arc the caller chose
    norm = q[..., 1:].norm(dim=-1, keepdim=True)
    angle = 2.0 * torch.atan2(norm, q[..., :1])
    small = norm < 1e-7
    scale = torch.where(small, 2.0 / q[..., :1].clamp_min(1e-12), angle / torch.where(small, torch.ones_like(norm), norm))
    return q[..., 1:] * scale


def slerp(q0: torch.Tensor, q1: torch.Tensor, t) -> torch.Tensor:
    """Spherical interpolation q0 -> q1 along the shorter arc; ``t`` broadcasts and may leave [0, 1]."""
    t = torch.as_tensor(t, dtype=q0.dtype, device=q0.device)
    q1 = torch.where((q0 * q1).sum(-1, keepdim=True) < 0, -q1, q1)
    rel = quat_mul(quat_conjugate(q0), q1)
    step = axis_angle_to_quaternion(_log(rel) * t[..., None])
    return quat_mul(q0, step)


def align_hemispheres(q: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Flip signs along ``dim`` so consecutive quaternions are on the same hemisphere."""
    q = q.movedim(dim, 0).clone()
    for i in range(1, q.shape[0]):
        q[i] = torch.where((q[i - 1] * q[i]).sum(-1, keepdim=True) < 0, -q[i], q[i])
    return q.movedim(0, dim)


def catmull_rom(p: tuple[torch.Tensor, ...], knots: tuple[torch.Tensor, ...], t: torch.Tensor) -> torch.Tensor:
    """Barry-Goldman Catmull-Rom on quaternions between p[1] and p[2] at times ``t`` [F].

    ``p`` four control quaternions [F,...,4], ``knots`` their times [F]. The curve passes through
    every key with a continuous angular velocity.
    """
    def ratio(a, b):
        r = (t - knots[a]) / (knots[b] - knots[a]).clamp_min(1e-9)
        return r.reshape(r.shape + (1,) * (p[0].dim() - 1 - r.dim()))

    a1 = slerp(p[0], p[1], ratio(0, 1))
    a2 = slerp(p[1], p[2], ratio(1, 2))
    a3 = slerp(p[2], p[3], ratio(2, 3))
    return slerp(slerp(a1, a2, ratio(0, 2)), slerp(a2, a3, ratio(1, 3)), ratio(1, 2))


def rotation_keys(times, quats: torch.Tensor, t: torch.Tensor, period: float | None = None) -> torch.Tensor:
    """Quaternion keyframes [K,...,4] at ``times`` [K] (increasing) sampled at ``t`` [F] by Catmull-Rom.

    With ``period`` the keys repeat every ``period`` seconds (a seamless loop; keys in [0, period));
    otherwise the curve holds the first/last key outside the key range.
    """
    times, t = _as64(times), _as64(t)
    q = align_hemispheres(quats.to(torch.float64))
    ext_t, ext_q, t = _extend(times, q, t, period, rotation=True)
    i = (torch.searchsorted(ext_t, t, right=True) - 1).clamp(1, len(ext_t) - 3)
    return catmull_rom(tuple(ext_q[i + k - 1] for k in range(4)), tuple(ext_t[i + k - 1] for k in range(4)), t)


def scalar_keys(times, values: torch.Tensor, t: torch.Tensor, period: float | None = None) -> torch.Tensor:
    """Keyed values [K,...] at ``times`` [K] sampled at ``t`` [F] by a monotone cubic (Fritsch-Carlson).

    Smooth through the keys, never overshooting them: a key between two equal neighbours is held
    with zero slope, so envelopes such as 0 -> 1 -> 1 -> 0 ease in and out exactly. ``period``
    as for :func:`rotation_keys`.
    """
    times, t = _as64(times), _as64(t)
    ext_t, ext_v, t = _extend(times, values.to(torch.float64), t, period)
    h = torch.diff(ext_t)
    delta = torch.diff(ext_v, dim=0) / h.reshape(-1, *[1] * (ext_v.dim() - 1))
    # slopes: harmonic mean of the neighbouring secants where they agree in sign, else flat
    d0, d1 = delta[:-1], delta[1:]
    h0 = h[:-1].reshape(-1, *[1] * (ext_v.dim() - 1))
    h1 = h[1:].reshape(-1, *[1] * (ext_v.dim() - 1))
    w0, w1 = 2 * h1 + h0, h1 + 2 * h0
    inner = torch.where(d0 * d1 > 0, (w0 + w1) / (w0 / torch.where(d0 == 0, 1.0, d0) + w1 / torch.where(d1 == 0, 1.0, d1)),
                        torch.zeros_like(d0))
    slopes = torch.cat([torch.zeros_like(delta[:1]), inner, torch.zeros_like(delta[:1])])
    i = (torch.searchsorted(ext_t, t, right=True) - 1).clamp(0, len(ext_t) - 2)
    span = h[i]
    s = ((t - ext_t[i]) / span).reshape(-1, *[1] * (ext_v.dim() - 1))
    span = span.reshape(s.shape)
    h00, h10, h01, h11 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s, -2 * s**3 + 3 * s**2, s**3 - s**2
    return h00 * ext_v[i] + h10 * span * slopes[i] + h01 * ext_v[i + 1] + h11 * span * slopes[i + 1]


def _as64(x) -> torch.Tensor:
    return torch.as_tensor(x, dtype=torch.float64)


def _extend(times: torch.Tensor, values: torch.Tensor, t: torch.Tensor, period: float | None,
            rotation: bool = False):
    """Keys with two neighbours added on each side (wrapped for a loop, repeated otherwise) and
    the query times folded into the key range; wrapped quaternions join their neighbours' hemisphere."""
    if period is not None:
        ext_t = torch.cat([times[-2:] - period, times, times[:2] + period])
        ext_v = torch.cat([values[-2:], values, values[:2]])
        if rotation:
            ext_v = align_hemispheres(ext_v)
        return ext_t, ext_v, torch.remainder(t, period)
    step = torch.ones(1, dtype=times.dtype)
    ext_t = torch.cat([times[:1] - 2 * step, times[:1] - step, times, times[-1:] + step, times[-1:] + 2 * step])
    ext_v = torch.cat([values[:1], values[:1], values, values[-1:], values[-1:]])
    return ext_t, ext_v, t.clamp(float(times[0]), float(times[-1]))
