"""The Motion type: a sequence of SMPL-X parameters, optionally with its own camera."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch

from ..body import skeleton
from ..geometry import axis_angle_to_matrix, matrix_to_axis_angle
from ..render.camera import Camera

# SMPL-X neutral's rest pelvis J0 (zero pose, zero shape). SMPL-X turns the root about the body's
# own rest pelvis, so re-expressing a motion in a rotated world needs it: t' = R (J0 + t) - J0.
# Bodies with other rest pelvises (other betas, the free body) are off by R J0' - J0' - (R J0 - J0),
# i.e. |R - I| times their pelvis offset from this constant: millimetres for human bodies.
REST_PELVIS = (0.0031, -0.3514, 0.0120)

# per-frame shapes of the pose fields, in the SMPL-X full-pose order
POSE_FIELDS: dict[str, tuple[int, ...]] = {
    "root_pose": (3,),
    "body_pose": (skeleton.NUM_BODY_JOINTS, 3),
    "jaw_pose": (3,),
    "leye_pose": (3,),
    "reye_pose": (3,),
    "lhand_pose": (skeleton.NUM_HAND_JOINTS, 3),
    "rhand_pose": (skeleton.NUM_HAND_JOINTS, 3),
}


@dataclass
class Motion:
    """SMPL-X motion: axis-angle poses per frame, ``trans`` [F,3] (SMPL-X transl), ``fps``.

    Pose fields: root_pose [F,3], body_pose [F,21,3], jaw/leye/reye_pose [F,3], lhand/rhand_pose
    [F,15,3]. ``camera`` (batch [F] or one camera) is the motion's own camera, in the same world
    as the posed body; ``None`` lets the renderer frame the body.
    Optional: ``expr`` [F,E] expression coefficients (LHM zeroes them), ``betas`` [B] the shape of
    the captured person (LHM uses the photo's shape instead), ``contacts`` [F,2] bool (left, right
    foot on the ground), ``loops`` true when the last frame flows back into the first.
    """

    root_pose: torch.Tensor
    body_pose: torch.Tensor
    jaw_pose: torch.Tensor
    leye_pose: torch.Tensor
    reye_pose: torch.Tensor
    lhand_pose: torch.Tensor
    rhand_pose: torch.Tensor
    trans: torch.Tensor
    fps: float = 30.0
    camera: Camera | None = None
    name: str = ""
    expr: torch.Tensor | None = None
    betas: torch.Tensor | None = None
    contacts: torch.Tensor | None = None
    loops: bool = False

    def __post_init__(self) -> None:
        F = self.trans.shape[0]
        if self.trans.shape != (F, 3):
            raise ValueError(f"motion trans has shape {tuple(self.trans.shape)}, expected [F,3]")
        for name, shape in POSE_FIELDS.items():
            t = getattr(self, name)
            if tuple(t.shape) != (F, *shape):
                raise ValueError(f"motion {name} has shape {tuple(t.shape)}, expected {(F, *shape)}")
        for name, want in (("expr", (F, None)), ("contacts", (F, 2))):
            t = getattr(self, name)
            if t is not None and (t.dim() != 2 or t.shape[0] != F or want[1] not in (None, t.shape[1])):
                raise ValueError(f"motion {name} has shape {tuple(t.shape)}, expected [{F},{want[1] or 'E'}]")
        if self.betas is not None and self.betas.dim() != 1:
            raise ValueError(f"motion betas has shape {tuple(self.betas.shape)}, expected [B]")
        for name in (*POSE_FIELDS, "trans", "expr", "betas"):
            t = getattr(self, name)
            if t is not None and not bool(torch.isfinite(t).all()):
                raise ValueError(f"motion {name} contains NaN or Inf values")
        if not (self.fps > 0 and math.isfinite(self.fps)):
            raise ValueError(f"motion fps must be a positive number, got {self.fps}")
        if self.camera is not None and self.camera.batch_shape not in ((), (F,)):
            raise ValueError(f"motion camera has batch shape {tuple(self.camera.batch_shape)}, expected () or ({F},)")

    def __len__(self) -> int:
        return self.trans.shape[0]

    @property
    def duration(self) -> float:
        """Length in seconds (a looping motion's period)."""
        return len(self) / self.fps

    @classmethod
    def from_full_pose(cls, full_pose: torch.Tensor, trans: torch.Tensor | None = None, **kwargs) -> "Motion":
        """Build from a full pose [F,55,3] in SMPL-X order (and optional trans [F,3])."""
        if trans is None:
            trans = full_pose.new_zeros(full_pose.shape[0], 3)
        return cls(**split_full_pose(full_pose), trans=trans, **kwargs)

    @classmethod
    def rest(cls, num_frames: int = 1, fps: float = 30.0) -> "Motion":
        """The zero motion: the T-pose held for ``num_frames``."""
        return cls.from_full_pose(torch.zeros(num_frames, skeleton.NUM_JOINTS, 3), fps=fps, name="rest")

    def full_pose(self) -> torch.Tensor:
        """All joint rotations [F,55,3] in SMPL-X order."""
        return torch.cat([
            self.root_pose[:, None], self.body_pose, self.jaw_pose[:, None], self.leye_pose[:, None],
            self.reye_pose[:, None], self.lhand_pose, self.rhand_pose,
        ], dim=1)

    def select(self, frames) -> "Motion":
        """The frames at ``frames`` (indices, slice or mask) as a new Motion."""
        if isinstance(frames, int):
            frames = [frames]
        cam = self.camera
        if cam is not None and len(cam.batch_shape):
            cam = cam[frames]
        picked = {name: getattr(self, name)[frames] for name in PER_FRAME_FIELDS if getattr(self, name) is not None}
        # a subset of frames no longer wraps around seamlessly
        return dataclasses.replace(self, **picked, camera=cam, loops=False)

    def transform(self, R: torch.Tensor, offset: torch.Tensor | None = None, pivot=REST_PELVIS) -> "Motion":
        """The same motion in a world moved by p -> R p + offset; the camera follows.

        R [3,3] or per frame [F,3,3], offset [3] or [F,3]. ``pivot`` is the rest pelvis the root
        turns about (see REST_PELVIS).
        """
        dtype = self.trans.dtype
        R = torch.as_tensor(R, dtype=dtype).expand(len(self), 3, 3)
        offset = torch.zeros(3, dtype=dtype) if offset is None else torch.as_tensor(offset, dtype=dtype)
        J0 = torch.as_tensor(pivot, dtype=dtype)
        root = matrix_to_axis_angle(R @ axis_angle_to_matrix(self.root_pose))
        trans = (R @ (J0 + self.trans)[..., None])[..., 0] + offset - J0
        cam = self.camera
        if cam is not None:
            # world-to-camera after the move: V T^-1 with T = [R | offset]
            T_inv = torch.zeros(len(self), 4, 4, dtype=dtype)
            T_inv[:, :3, :3] = R.transpose(-1, -2)
            T_inv[:, :3, 3] = -(R.transpose(-1, -2) @ offset.expand(len(self), 3)[..., None])[..., 0]
            T_inv[:, 3, 3] = 1.0
            V = cam.viewmat.to(dtype) @ T_inv
            if not cam.batch_shape and bool((V == V[:1]).all()):
                V = V[0]  # a single camera stays single when every frame moved alike
            cam = Camera(cam.K, V, cam.width, cam.height)
        return dataclasses.replace(self, root_pose=root, trans=trans, camera=cam)

    def replace(self, **changes) -> "Motion":
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)

    def resample(self, fps: float) -> "Motion":
        """This motion at another frame rate (see :func:`lhm.motion.timing.resample`)."""
        from .timing import resample

        return resample(self, fps)

    def trim(self, start: int = 0, stop: int | None = None) -> "Motion":
        """Frames ``start`` to ``stop`` (exclusive; see :func:`lhm.motion.timing.trim`)."""
        from .timing import trim

        return trim(self, start, stop)

    def loop(self, duration: float, crossfade: float = 0.5) -> "Motion":
        """Repeat to ``duration`` seconds (see :func:`lhm.motion.timing.loop`)."""
        from .timing import loop

        return loop(self, duration, crossfade)

    def mirror(self) -> "Motion":
        """Left and right swapped (see :func:`lhm.motion.timing.mirror`)."""
        from .timing import mirror

        return mirror(self)


def split_full_pose(full_pose: torch.Tensor) -> dict[str, torch.Tensor]:
    """The seven SMPL-X pose fields (root_pose, body_pose, ...) of a full pose [F,55,3]."""
    if full_pose.dim() != 3 or full_pose.shape[1:] != (skeleton.NUM_JOINTS, 3):
        raise ValueError(f"full pose has shape {tuple(full_pose.shape)}, expected [F,55,3]")
    return dict(
        root_pose=full_pose[:, skeleton.ROOT][:, 0], body_pose=full_pose[:, skeleton.BODY],
        jaw_pose=full_pose[:, skeleton.JAW][:, 0], leye_pose=full_pose[:, skeleton.LEYE][:, 0],
        reye_pose=full_pose[:, skeleton.REYE][:, 0], lhand_pose=full_pose[:, skeleton.LHAND],
        rhand_pose=full_pose[:, skeleton.RHAND],
    )


# fields indexed by frame, in addition to the camera
PER_FRAME_FIELDS = (*POSE_FIELDS, "trans", "expr", "contacts")
