"""Linear blend skinning of Gaussians: positions and orientations for a batch of frames.

``skin_gaussians`` is the one entry. ``skin_gaussians_torch`` is the plain reference (autograd, any
device); on CPU without gradients a fused numba kernel does the same arithmetic in one pass per
Gaussian, skipping zero weights (a Gaussian is bound to two joints on average), which is what makes
posing 40,000 Gaussians take milliseconds. tests/test_avatar.py checks the two agree.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from .geometry import matrix_to_quaternion, quaternion_multiply


def skin_gaussians(weights: torch.Tensor, joint_transforms: torch.Tensor, rest_means: torch.Tensor,
                   rest_rotations: torch.Tensor, quats: torch.Tensor, rigid_mask: torch.Tensor,
                   trans: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose Gaussians given in the shaped zero pose.

    weights [N,J], or its ``sparse_weights`` (index, values) computed once (the fast path's form);
    joint_transforms [F,J,4,4] (zero pose -> frame); rest_means [N,3] (zero pose, shape
    applied); rest_rotations [N,3,3] (the rotation already applied to the Gaussians to reach the zero
    pose); quats [N,4] w-first canonical orientations; rigid_mask [N] bool: orientation left as is;
    trans [F,3] added to the positions (None: zero).
    Returns means [F,N,3] and quats [F,N,4] (w >= 0). The orientation follows the nearest rotation of the
    blended matrix, as LHM does.
    """
    tensors = (joint_transforms, rest_means, rest_rotations, quats)
    dense = weights if isinstance(weights, torch.Tensor) else weights[1]
    grads = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (dense, *tensors, trans))
    if rest_means.device.type == "cpu" and not grads:
        return _skin_numba(weights, *tensors, rigid_mask, trans)
    return skin_gaussians_torch(weights, *tensors, rigid_mask, trans)


def sparse_weights(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero skinning weights per Gaussian: joint indices and weights [N,K], K the most any Gaussian has."""
    k = max(1, int((weights != 0).sum(-1).max()))
    values, index = weights.topk(k, dim=-1)
    return index, values


def skin_gaussians_torch(weights, joint_transforms, rest_means, rest_rotations, quats, rigid_mask, trans=None):
    """The reference of :func:`skin_gaussians` in plain torch."""
    if isinstance(weights, tuple):
        index, values = weights
        weights = values.new_zeros(values.shape[0], joint_transforms.shape[1]).scatter_(-1, index, values)
    F, J = joint_transforms.shape[:2]
    T = (weights @ joint_transforms.reshape(F, J, 16)).reshape(F, -1, 4, 4)
    means = (T[..., :3, :3] @ rest_means[..., None])[..., 0] + T[..., :3, 3]
    if trans is not None:
        means = means + trans[:, None]
    q_rig = torch.nn.functional.normalize(matrix_to_quaternion(T[..., :3, :3] @ rest_rotations), dim=-1)
    identity = q_rig.new_tensor([1.0, 0.0, 0.0, 0.0])
    q_rig = torch.where(rigid_mask[:, None], identity, q_rig)
    return means, quaternion_multiply(q_rig, quats)


def _skin_numba(weights, joint_transforms, rest_means, rest_rotations, quats, rigid_mask, trans):
    dtype = rest_means.dtype
    if trans is None:
        trans = rest_means.new_zeros(joint_transforms.shape[0], 3)
    work = torch.float64 if dtype == torch.float64 else torch.float32
    index, values = weights if isinstance(weights, tuple) else sparse_weights(weights)
    arrays = [t.detach().to(work).contiguous().numpy()
              for t in (values, joint_transforms, rest_means, rest_rotations, quats, trans)]
    F, N = joint_transforms.shape[0], rest_means.shape[0]
    means = np.empty((F, N, 3), dtype=arrays[2].dtype)
    out_q = np.empty((F, N, 4), dtype=arrays[2].dtype)
    _skin_kernel(index.contiguous().numpy(), *arrays, rigid_mask.detach().cpu().numpy().astype(np.bool_), means, out_q)
    return torch.from_numpy(means).to(dtype), torch.from_numpy(out_q).to(dtype)


@njit(cache=True, parallel=True, error_model="numpy")
def _skin_kernel(idx, W, A, z, R0, q0, trans, rigid, means, out_q):  # pragma: no cover - compiled
    F, K = A.shape[0], idx.shape[1]
    N = z.shape[0]
    for n in prange(N):
        zx, zy, zz = z[n, 0], z[n, 1], z[n, 2]
        aw, ax, ay, az = q0[n, 0], q0[n, 1], q0[n, 2], q0[n, 3]
        for f in range(F):
            # scalars, not small arrays: a heap allocation per Gaussian and frame costs more than the arithmetic
            t00 = t01 = t02 = t03 = t10 = t11 = t12 = t13 = t20 = t21 = t22 = t23 = 0.0
            for k in range(K):
                w = W[n, k]
                a = A[f, idx[n, k]]
                t00 += w * a[0, 0]
                t01 += w * a[0, 1]
                t02 += w * a[0, 2]
                t03 += w * a[0, 3]
                t10 += w * a[1, 0]
                t11 += w * a[1, 1]
                t12 += w * a[1, 2]
                t13 += w * a[1, 3]
                t20 += w * a[2, 0]
                t21 += w * a[2, 1]
                t22 += w * a[2, 2]
                t23 += w * a[2, 3]
            means[f, n, 0] = t00 * zx + t01 * zy + t02 * zz + t03 + trans[f, 0]
            means[f, n, 1] = t10 * zx + t11 * zy + t12 * zz + t13 + trans[f, 1]
            means[f, n, 2] = t20 * zx + t21 * zy + t22 * zz + t23 + trans[f, 2]
            if rigid[n]:
                qw, qx, qy, qz = 1.0, 0.0, 0.0, 0.0
            else:
                r = R0[n]
                qw, qx, qy, qz = _matrix_quaternion(
                    t00 * r[0, 0] + t01 * r[1, 0] + t02 * r[2, 0], t00 * r[0, 1] + t01 * r[1, 1] + t02 * r[2, 1],
                    t00 * r[0, 2] + t01 * r[1, 2] + t02 * r[2, 2],
                    t10 * r[0, 0] + t11 * r[1, 0] + t12 * r[2, 0], t10 * r[0, 1] + t11 * r[1, 1] + t12 * r[2, 1],
                    t10 * r[0, 2] + t11 * r[1, 2] + t12 * r[2, 2],
                    t20 * r[0, 0] + t21 * r[1, 0] + t22 * r[2, 0], t20 * r[0, 1] + t21 * r[1, 1] + t22 * r[2, 1],
                    t20 * r[0, 2] + t21 * r[1, 2] + t22 * r[2, 2])
            w_ = qw * aw - qx * ax - qy * ay - qz * az
            x_ = qw * ax + qx * aw + qy * az - qz * ay
            y_ = qw * ay - qx * az + qy * aw + qz * ax
            z_ = qw * az + qx * ay - qy * ax + qz * aw
            s = -1.0 if w_ < 0 else 1.0
            out_q[f, n, 0] = s * w_
            out_q[f, n, 1] = s * x_
            out_q[f, n, 2] = s * y_
            out_q[f, n, 3] = s * z_


@njit(cache=True, inline="always")
def _matrix_quaternion(m00, m01, m02, m10, m11, m12, m20, m21, m22):  # pragma: no cover - compiled
    # the best-conditioned of the four candidates, as lhm.geometry.matrix_to_quaternion, then normalised
    d0 = 1.0 + m00 + m11 + m22
    d1 = 1.0 + m00 - m11 - m22
    d2 = 1.0 - m00 + m11 - m22
    d3 = 1.0 - m00 - m11 + m22
    if d0 >= d1 and d0 >= d2 and d0 >= d3:
        q0, q1, q2, q3 = d0, m21 - m12, m02 - m20, m10 - m01
    elif d1 >= d2 and d1 >= d3:
        q0, q1, q2, q3 = m21 - m12, d1, m10 + m01, m02 + m20
    elif d2 >= d3:
        q0, q1, q2, q3 = m02 - m20, m10 + m01, d2, m12 + m21
    else:
        q0, q1, q2, q3 = m10 - m01, m20 + m02, m21 + m12, d3
    norm = math.sqrt(q0 * q0 + q1 * q1 + q2 * q2 + q3 * q3)
    if norm == 0.0:
        return 1.0, 0.0, 0.0, 0.0
    s = 1.0 / norm if q0 >= 0 else -1.0 / norm
    return q0 * s, q1 * s, q2 * s, q3 * s
