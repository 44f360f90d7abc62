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
                   rest_rotations: torch.Tensor, quats: torch.Tensor, rigid_mask: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Pose Gaussians given in the shaped zero pose.

    weights [N,J], or its ``sparse_weights`` (index, values) computed once (the fast path's form);
    joint_transforms [F,J,4,4] (zero pose -> frame); rest_means [N,3] (zero pose, shape
    applied); rest_rotations [N,3,3] (the rotation already applied to the Gaussians to reach the zero
    pose); quats [N,4] w-first canonical orientations; rigid_mask [N] bool: orientation left as is.
    Returns means [F,N,3] and quats [F,N,4] (w >= 0). The orientation follows the nearest rotation of the
    blended matrix, as LHM does.
    """
    tensors = (joint_transforms, rest_means, rest_rotations, quats)
    dense = weights if isinstance(weights, torch.Tensor) else weights[1]
    if rest_means.device.type == "cpu" and not (torch.is_grad_enabled() and any(t.requires_grad for t in (dense, *tensors))):
        return _skin_numba(weights, *tensors, rigid_mask)
    return skin_gaussians_torch(weights, *tensors, rigid_mask)


def sparse_weights(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The non-zero skinning weights per Gaussian: joint indices and weights [N,K], K the most any Gaussian has."""
    k = max(1, int((weights != 0).sum(-1).max()))
    values, index = weights.topk(k, dim=-1)
    return index, values


def skin_gaussians_torch(weights, joint_transforms, rest_means, rest_rotations, quats, rigid_mask):
    """The reference of :func:`skin_gaussians` in plain torch."""
    if isinstance(weights, tuple):
        index, values = weights
        weights = values.new_zeros(values.shape[0], joint_transforms.shape[1]).scatter_(-1, index, values)
    F, J = joint_transforms.shape[:2]
    T = (weights @ joint_transforms.reshape(F, J, 16)).reshape(F, -1, 4, 4)
    means = (T[..., :3, :3] @ rest_means[..., None])[..., 0] + T[..., :3, 3]
    q_rig = torch.nn.functional.normalize(matrix_to_quaternion(T[..., :3, :3] @ rest_rotations), dim=-1)
    identity = q_rig.new_tensor([1.0, 0.0, 0.0, 0.0])
    q_rig = torch.where(rigid_mask[:, None], identity, q_rig)
    return means, quaternion_multiply(q_rig, quats)


def _skin_numba(weights, joint_transforms, rest_means, rest_rotations, quats, rigid_mask):
    dtype = rest_means.dtype
    work = torch.float64 if dtype == torch.float64 else torch.float32
    index, values = weights if isinstance(weights, tuple) else sparse_weights(weights)
    arrays = [t.detach().to(work).contiguous().numpy()
              for t in (values, joint_transforms, rest_means, rest_rotations, quats)]
    F, N = joint_transforms.shape[0], rest_means.shape[0]
    means = np.empty((F, N, 3), dtype=arrays[2].dtype)
    out_q = np.empty((F, N, 4), dtype=arrays[2].dtype)
    _skin_kernel(index.contiguous().numpy(), *arrays, rigid_mask.detach().cpu().numpy().astype(np.bool_), means, out_q)
    return torch.from_numpy(means).to(dtype), torch.from_numpy(out_q).to(dtype)


@njit(cache=True, parallel=True, error_model="numpy")
def _skin_kernel(idx, W, A, z, R0, q0, rigid, means, out_q):  # pragma: no cover - compiled
    F, K = A.shape[0], idx.shape[1]
    N = z.shape[0]
    for n in prange(N):
        for f in range(F):
            T = np.zeros((3, 4), dtype=z.dtype)
            for k in range(K):
                w = W[n, k]
                j = idx[n, k]
                for r in range(3):
                    for c in range(4):
                        T[r, c] += w * A[f, j, r, c]
            for r in range(3):
                means[f, n, r] = T[r, 0] * z[n, 0] + T[r, 1] * z[n, 1] + T[r, 2] * z[n, 2] + T[r, 3]
            if rigid[n]:
                qw, qx, qy, qz = 1.0, 0.0, 0.0, 0.0
            else:
                M = np.zeros((3, 3), dtype=z.dtype)
                for r in range(3):
                    for c in range(3):
                        M[r, c] = T[r, 0] * R0[n, 0, c] + T[r, 1] * R0[n, 1, c] + T[r, 2] * R0[n, 2, c]
                qw, qx, qy, qz = _matrix_quaternion(M)
            aw, ax, ay, az = q0[n, 0], q0[n, 1], q0[n, 2], q0[n, 3]
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
def _matrix_quaternion(M):  # pragma: no cover - compiled
    # the best-conditioned of the four candidates, as lhm.geometry.matrix_to_quaternion, then normalised
    d0 = 1.0 + M[0, 0] + M[1, 1] + M[2, 2]
    d1 = 1.0 + M[0, 0] - M[1, 1] - M[2, 2]
    d2 = 1.0 - M[0, 0] + M[1, 1] - M[2, 2]
    d3 = 1.0 - M[0, 0] - M[1, 1] + M[2, 2]
    if d0 >= d1 and d0 >= d2 and d0 >= d3:
        q = (d0, M[2, 1] - M[1, 2], M[0, 2] - M[2, 0], M[1, 0] - M[0, 1])
    elif d1 >= d2 and d1 >= d3:
        q = (M[2, 1] - M[1, 2], d1, M[1, 0] + M[0, 1], M[0, 2] + M[2, 0])
    elif d2 >= d3:
        q = (M[0, 2] - M[2, 0], M[1, 0] + M[0, 1], d2, M[1, 2] + M[2, 1])
    else:
        q = (M[1, 0] - M[0, 1], M[2, 0] + M[0, 2], M[2, 1] + M[1, 2], d3)
    norm = math.sqrt(q[0] * q[0] + q[1] * q[1] + q[2] * q[2] + q[3] * q[3])
    if norm == 0.0:
        return 1.0, 0.0, 0.0, 0.0
    s = 1.0 / norm if q[0] >= 0 else -1.0 / norm
    return q[0] * s, q[1] * s, q[2] * s, q[3] * s
