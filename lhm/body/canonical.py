"""LHM's canonical space: the "big pose" and the dense query points sampled on the body surface."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..geometry import axis_angle_to_matrix, batch_rigid_transform, transform_points
from . import skeleton
from .body import Body

BIG_POSE_HIP_ANGLE = math.pi / 9  # each leg abducted 20 degrees about z (LHM cano_pose_type 1)
HEAD_FRACTION = 0.25


def big_pose(dtype=torch.float32) -> torch.Tensor:
    """The canonical full pose [55,3]: hips +-pi/9 about z, every other joint zero."""
    pose = torch.zeros(skeleton.NUM_JOINTS, 3, dtype=dtype)
    pose[skeleton.JOINT_INDEX["left_hip"], 2] = BIG_POSE_HIP_ANGLE
    pose[skeleton.JOINT_INDEX["right_hip"], 2] = -BIG_POSE_HIP_ANGLE
    return pose


@dataclass
class SurfaceSamples:
    """Points on the rest (zero pose, zero shape) surface: first ``num_body`` body, then head."""

    points: torch.Tensor  # [N,3]
    vertex_index: torch.Tensor  # [N] nearest template vertex, the source of per-point attributes
    num_body: int

    def __len__(self) -> int:
        return self.points.shape[0]


def sample_surface(body: Body, n: int, seed: int = 0) -> SurfaceSamples:
    """Deterministic area-weighted samples: int(0.75 n) on the body, the rest on the head."""
    if n < 4:
        raise ValueError(f"need at least 4 sample points, got {n}")
    faces = body.faces
    head_face = body.head_mask[faces].all(dim=1)
    num_body = int(n * (1 - HEAD_FRACTION))
    gen = torch.Generator().manual_seed(seed)
    v = body.vertices.double()
    parts = [_sample_faces(v, faces[~head_face], num_body, gen), _sample_faces(v, faces[head_face], n - num_body, gen)]
    points = torch.cat(parts).to(body.vertices.dtype)
    return SurfaceSamples(points, nearest_vertex(body.vertices, points), num_body)


def _sample_faces(v: torch.Tensor, faces: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
    if len(faces) == 0:
        raise ValueError("the body has no faces in a region to sample (check its head mask)")
    a, b, c = v[faces[:, 0]], v[faces[:, 1]], v[faces[:, 2]]
    area = torch.linalg.cross(b - a, c - a).norm(dim=1)
    idx = torch.multinomial(area, n, replacement=True, generator=gen)
    r1, r2 = torch.rand(n, 1, generator=gen, dtype=v.dtype), torch.rand(n, 1, generator=gen, dtype=v.dtype)
    s = r1.sqrt()  # uniform over the triangle
    return a[idx] * (1 - s) + b[idx] * (s * (1 - r2)) + c[idx] * (s * r2)


def nearest_vertex(vertices: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Index of the nearest vertex for each point (exact, KD-tree)."""
    from scipy.spatial import cKDTree

    _, idx = cKDTree(vertices.detach().cpu().double().numpy()).query(points.detach().cpu().double().numpy())
    return torch.as_tensor(idx, dtype=torch.long)


def load_dense_points(path: str | os.PathLike, n: int, body: Body) -> SurfaceSamples:
    """Load the official LHM dense point file ``1_{N}.ply`` (its order is what checkpoints need)."""
    from plyfile import PlyData

    path = Path(path)
    try:
        vertex = PlyData.read(str(path))["vertex"]
        points = np.stack([vertex["x"], vertex["y"], vertex["z"]], axis=1).astype(np.float32)
    except Exception as e:  # plyfile raises many types for malformed files
        raise ValueError(f"'{path}' is not a readable point-cloud .ply ({type(e).__name__}: {e})") from e
    if len(points) != n:
        raise ValueError(f"'{path}' holds {len(points)} points but the model needs {n}; "
                         f"use the file 1_{n}.ply from the LHM prior files")
    pts = torch.from_numpy(points)
    return SurfaceSamples(pts, nearest_vertex(body.vertices, pts), 3 * (n // 4))


@dataclass
class CanonicalSpace:
    """Query points in the big pose with their skinning data, as LHM's renderer prepares them.

    points [N,3] (big pose, zero shape), weights [N,55], shapedirs [N,3,B],
    neutral_transforms [55,4,4] taking big-pose points back to the zero pose.
    """

    points: torch.Tensor
    weights: torch.Tensor
    shapedirs: torch.Tensor
    neutral_transforms: torch.Tensor
    num_body: int

    @classmethod
    def from_samples(cls, body: Body, samples: SurfaceSamples, weights: torch.Tensor | None = None,
                     shapedirs: torch.Tensor | None = None) -> "CanonicalSpace":
        """Pose the samples into the big pose with zero shape, on the body's device and dtype.

        Skinning weights and shape directions are the nearest vertex's unless given (the LHM
        checkpoints carry their own, which override the body's).
        """
        ref = body.vertices
        W = body.weights[samples.vertex_index] if weights is None else weights.to(ref)
        shapedirs = body.shapedirs[samples.vertex_index] if shapedirs is None else shapedirs.to(ref)
        rot = axis_angle_to_matrix(big_pose(ref.dtype)).to(ref.device)
        J_big, A = batch_rigid_transform(rot, body.joints, skeleton.PARENTS)
        points = transform_points(torch.einsum("nj,jab->nab", W, A), samples.points.to(ref))
        # inverse local rotations about the big-pose joints undo the pose exactly: only the hips
        # and the jaw are rotated, and no rotated joint is an ancestor of another
        _, neutral = batch_rigid_transform(rot.transpose(-1, -2), J_big, skeleton.PARENTS)
        return cls(points, W, shapedirs, neutral, samples.num_body)

    def __len__(self) -> int:
        return self.points.shape[0]
