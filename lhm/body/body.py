"""The Body interface shared by the free body and SMPL-X: a rigged template on the SMPL-X skeleton."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from ..geometry import axis_angle_to_matrix, batch_rigid_transform
from . import skeleton


@dataclass
class PosedBody:
    """Result of posing a body: vertices [...,V,3], joints [...,55,3], transforms [...,55,4,4]."""

    vertices: torch.Tensor
    joints: torch.Tensor
    transforms: torch.Tensor


@dataclass
class Body:
    """A mesh rigged to the SMPL-X skeleton, in its zero pose (T-pose), y-up, facing +z, metres.

    vertices [V,3], faces [F,3] long, joints [55,3], weights [V,55] (rows sum to 1),
    shapedirs [V,3,B] and joint_shapedirs [55,3,B] (linear shape space, B may be 0),
    head_mask / left_hand_mask / right_hand_mask [V] bool.
    """

    name: str
    vertices: torch.Tensor
    faces: torch.Tensor
    joints: torch.Tensor
    weights: torch.Tensor
    shapedirs: torch.Tensor
    joint_shapedirs: torch.Tensor
    head_mask: torch.Tensor
    left_hand_mask: torch.Tensor
    right_hand_mask: torch.Tensor

    def __post_init__(self) -> None:
        V = self.vertices.shape[0]
        checks = {
            "vertices": (self.vertices.shape, (V, 3)),
            "joints": (self.joints.shape, (skeleton.NUM_JOINTS, 3)),
            "weights": (self.weights.shape, (V, skeleton.NUM_JOINTS)),
            "shapedirs": (self.shapedirs.shape[:2], (V, 3)),
            "joint_shapedirs": (self.joint_shapedirs.shape, (skeleton.NUM_JOINTS, 3, self.shapedirs.shape[-1])),
            "head_mask": (self.head_mask.shape, (V,)),
        }
        for name, (got, want) in checks.items():
            if tuple(got) != tuple(want):
                raise ValueError(f"body '{self.name}': {name} has shape {tuple(got)}, expected {tuple(want)}")
        if self.faces.dim() != 2 or self.faces.shape[1] != 3 or int(self.faces.max()) >= V:
            raise ValueError(f"body '{self.name}': faces must be [F,3] indices below {V}")

    @property
    def parents(self) -> torch.Tensor:
        """Kinematic parents of the 55 joints (SMPL-X order)."""
        return torch.tensor(skeleton.PARENTS, dtype=torch.long)

    @property
    def num_betas(self) -> int:
        """Number of shape coefficients this body accepts."""
        return self.shapedirs.shape[-1]

    def to(self, *args, **kwargs) -> "Body":
        """Move/cast the floating-point tensors (like ``Tensor.to``); index tensors keep their dtype."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, torch.Tensor):
                v = v.to(*args, **kwargs) if v.is_floating_point() else v.to(device=_device_of(args, kwargs, v))
            out[f.name] = v
        return Body(**out)

    def _betas(self, betas: torch.Tensor | None) -> torch.Tensor:
        if betas is None:
            return self.vertices.new_zeros(self.num_betas)
        betas = torch.as_tensor(betas, dtype=self.vertices.dtype, device=self.vertices.device)
        if betas.shape[-1] > self.num_betas:
            if bool((betas[..., self.num_betas:] != 0).any()):
                raise ValueError(f"body '{self.name}' has {self.num_betas} shape coefficients, got {betas.shape[-1]} non-zero ones")
            betas = betas[..., : self.num_betas]
        elif betas.shape[-1] < self.num_betas:
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[-1]))
        return betas

    def shaped_vertices(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        """Rest vertices [...,V,3] with shape coefficients betas [...,B] applied."""
        b = self._betas(betas)
        return self.vertices + torch.einsum("vcb,...b->...vc", self.shapedirs, b)

    def shaped_joints(self, betas: torch.Tensor | None = None) -> torch.Tensor:
        """Rest joints [...,55,3] for shape coefficients betas [...,B]."""
        b = self._betas(betas)
        return self.joints + torch.einsum("jcb,...b->...jc", self.joint_shapedirs, b)

    def pose(self, full_pose: torch.Tensor, betas: torch.Tensor | None = None,
             transl: torch.Tensor | None = None) -> PosedBody:
        """Pose the mesh by linear blend skinning.

        full_pose [...,55,3] axis-angle in SMPL-X order (root, 21 body, jaw, eyes, 15+15 hand),
        betas [B] or [...,B], transl [...,3] (SMPL-X ``transl``: added after skinning).
        """
        rot = axis_angle_to_matrix(full_pose)
        joints_rest = self.shaped_joints(betas).expand(rot.shape[:-3] + (skeleton.NUM_JOINTS, 3))
        posed_joints, A = batch_rigid_transform(rot, joints_rest, skeleton.PARENTS)
        T = torch.einsum("vj,...jab->...vab", self.weights, A)
        v = self.shaped_vertices(betas)
        verts = (T[..., :3, :3] @ v[..., None])[..., 0] + T[..., :3, 3]
        if transl is not None:
            verts = verts + transl[..., None, :]
            posed_joints = posed_joints + transl[..., None, :]
        return PosedBody(verts, posed_joints, A)


def _device_of(args, kwargs, v: torch.Tensor):
    dev = kwargs.get("device")
    for a in args:
        if isinstance(a, (torch.device, str)):
            dev = a
    return dev if dev is not None else v.device
