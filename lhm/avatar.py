"""The Avatar: canonical Gaussians rigged to a body, posed by linear blend skinning.

Both engines (LHM and Fit) produce one; posing, rendering and export are shared.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .body import Body, skeleton
from .body.canonical import CanonicalSpace
from .gaussians import Gaussians
from .geometry import axis_angle_to_matrix, batch_rigid_transform
from .motion import Motion
from .skinning import skin_gaussians, sparse_weights


@dataclass
class Avatar:
    """Gaussians in the canonical big pose with what is needed to pose them.

    gaussians: canonical Gaussians [N]; weights [N,55] skinning weights; shapedirs [N,3,B] per
    Gaussian shape directions; neutral_transforms [55,4,4] (big pose -> zero pose); body; betas [B];
    rigid_mask [N] bool: Gaussians whose orientation does not follow the skinning rotation.
    """

    gaussians: Gaussians
    weights: torch.Tensor
    shapedirs: torch.Tensor
    neutral_transforms: torch.Tensor
    body: Body
    betas: torch.Tensor
    rigid_mask: torch.Tensor | None = None
    info: dict = field(default_factory=dict)
    _rest_cache: tuple | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n = len(self.gaussians)
        if self.gaussians.batch_shape:
            raise ValueError("an Avatar holds one unbatched set of canonical Gaussians")
        if self.weights.shape != (n, skeleton.NUM_JOINTS):
            raise ValueError(f"avatar weights have shape {tuple(self.weights.shape)}, expected ({n}, 55)")
        if self.shapedirs.shape[:2] != (n, 3) or self.shapedirs.shape[2] != self.betas.shape[-1]:
            raise ValueError(f"avatar shapedirs {tuple(self.shapedirs.shape)} do not match {n} Gaussians "
                             f"and {self.betas.shape[-1]} betas")
        if self.rigid_mask is None:
            self.rigid_mask = torch.zeros(n, dtype=torch.bool, device=self.weights.device)

    @classmethod
    def from_canonical(cls, space: CanonicalSpace, body: Body, gaussians: Gaussians,
                       betas: torch.Tensor | None = None, **kwargs) -> "Avatar":
        """Attach canonical Gaussians (one per query point of ``space``) to the body."""
        if betas is None:
            betas = body.vertices.new_zeros(body.num_betas)
        return cls(gaussians, space.weights, space.shapedirs, space.neutral_transforms, body, betas, **kwargs)

    def __len__(self) -> int:
        return len(self.gaussians)

    def to(self, *args, **kwargs) -> "Avatar":
        """Move/cast every tensor (like ``Tensor.to``)."""
        weights = self.weights.to(*args, **kwargs)
        return Avatar(self.gaussians.to(*args, **kwargs), weights, self.shapedirs.to(*args, **kwargs),
                      self.neutral_transforms.to(*args, **kwargs), self.body.to(*args, **kwargs),
                      self.betas.to(*args, **kwargs), self.rigid_mask.to(weights.device), dict(self.info))

    def pose(self, motion: Motion | torch.Tensor, frames=None, trans: torch.Tensor | None = None) -> Gaussians:
        """Posed Gaussians [F,N] for a Motion (optionally only ``frames``) or a full pose [F,55,3].

        As LHM: un-pose from the big pose, add shape in the zero pose, skin to the target pose, add
        ``trans``, and rotate each Gaussian by its blended skinning rotation.
        """
        if isinstance(motion, Motion):
            if frames is not None:
                motion = motion.select(frames)
            full_pose, trans = motion.full_pose(), motion.trans
        else:
            full_pose = motion
        g = self.gaussians
        dtype, device = g.means.dtype, g.means.device
        full_pose = full_pose.to(dtype=dtype, device=device)
        W, z, R0 = self._rest()
        rot = axis_angle_to_matrix(full_pose)
        joints = self.body.shaped_joints(self.betas).expand(rot.shape[:-3] + (skeleton.NUM_JOINTS, 3))
        _, A = batch_rigid_transform(rot, joints, skeleton.PARENTS)
        batch = A.shape[:-3]
        frames = A.reshape(-1, skeleton.NUM_JOINTS, 4, 4)
        if trans is not None:
            trans = trans.to(dtype=dtype, device=device).expand(*batch, 3).reshape(-1, 3)
        means, quats = skin_gaussians(W, frames, z, R0, g.quats, self.rigid_mask, trans)
        means, quats = means.reshape(*batch, -1, 3), quats.reshape(*batch, -1, 4)
        return Gaussians(means, quats, g.scales.expand(*batch, -1, -1), g.opacities.expand(*batch, -1),
                         g.colors.expand(*batch, *g.colors.shape))

    def _rest(self) -> tuple:
        """Skinning weights, zero-pose positions (shape added) and the big-to-zero-pose rotations.

        They depend on the avatar alone, so they are kept until one of their inputs changes; while
        gradients flow into them they are recomputed (and the weights stay dense for autograd).
        """
        inputs = (self.gaussians.means, self.weights, self.neutral_transforms, self.shapedirs, self.betas)
        grad = torch.is_grad_enabled() and any(t.requires_grad for t in inputs)
        key = tuple((id(t), t._version) for t in inputs)
        if not grad and self._rest_cache is not None and self._rest_cache[0] == key:
            return self._rest_cache[1]
        # per-Gaussian un-posing transform, big pose -> zero pose (no translation is added here)
        T0 = (self.weights @ self.neutral_transforms.reshape(skeleton.NUM_JOINTS, 16)).reshape(-1, 4, 4)
        z = (T0[:, :3, :3] @ self.gaussians.means[:, :, None])[..., 0] + T0[:, :3, 3]
        z = z + torch.einsum("ncb,b->nc", self.shapedirs, self.betas)
        R0 = T0[:, :3, :3].contiguous()
        if grad:
            return self.weights, z, R0
        rest = (sparse_weights(self.weights) if self.weights.device.type == "cpu" else self.weights, z, R0)
        self._rest_cache = (key, rest)
        return rest

    def tpose(self) -> Gaussians:
        """Gaussians in the SMPL-X zero pose (T-pose, flat hands) with the avatar's shape."""
        return self.pose(torch.zeros(1, skeleton.NUM_JOINTS, 3)).frame(0)

    def posed(self, pose: str | int = "tpose", motion: Motion | None = None) -> Gaussians:
        """One unbatched Gaussian set: ``"tpose"``, ``"canonical"`` or frame ``pose`` of ``motion``."""
        if pose == "tpose":
            return self.tpose()
        if pose == "canonical":
            return self.gaussians
        if isinstance(pose, int) and not isinstance(pose, bool):
            if motion is None:
                raise ValueError("posing at a motion frame needs a motion")
            if not -len(motion) <= pose < len(motion):
                raise ValueError(f"frame {pose} is outside the motion's {len(motion)} frames")
            return self.pose(motion, [pose]).frame(0)
        raise ValueError(f"pose must be 'tpose', 'canonical' or a frame index, got {pose!r}")

    def save_ply(self, path: str | os.PathLike, pose: str | int = "tpose", motion: Motion | None = None) -> None:
        """Write a 3DGS .ply in the T-pose (as the official tools), the canonical pose or a motion frame."""
        from .io import save_ply

        save_ply(path, self.posed(pose, motion).detach())

    def save_splat(self, path: str | os.PathLike, pose: str | int = "tpose", motion: Motion | None = None) -> None:
        """Write a .splat (web viewers' format) in the given pose."""
        from .io import save_splat

        save_splat(path, self.posed(pose, motion).detach())
