"""Human joint limits for SMPL-X poses, used to check motions (the presets are tested against it).

Each joint's local rotation is written as a rotation vector in degrees, in the rest frame where
the joint axes are the world's (y up, facing +z, left at +x), and each component must lie in the
range of ``LIMITS``. Ranges are given for the left side and the midline; a right-side joint is
mirrored (x, y, z) -> (x, -y, -z) and checked against its left twin. The ranges are generous
versions of clinical ranges of motion: they reject broken poses (knees bending forwards, heads
turned backwards), not unusual ones.

The shoulder moves too far for a box on one rotation vector, so it is checked as a direction and
a twist (``SHOULDER``): where the upper arm points (elevation from hanging, 0..180 degrees, and
azimuth of its horizontal part, 0 = sideways, 90 = forwards, 180 = across the chest, -90 =
backwards) and how far it is turned about itself, measured from the hanging arm (elbow crease
forward) carried to that direction by the shortest swing, as ``rig.arm_rotation`` poses it.
"""
from __future__ import annotations

import math

import torch

from ..body import skeleton
from ..geometry import axis_angle_to_matrix, quaternion_to_matrix
from .motion import Motion
from .rig import arm_rotation

_FINGER_BASE = ((-25, 25), (-30, 30), (-100, 35))
_FINGER_TIP = ((-15, 15), (-15, 15), (-115, 15))
_THUMB = ((-75, 75), (-75, 75), (-75, 75))

# joint -> ((x min, x max), (y min, y max), (z min, z max)) in degrees; None = unlimited (the root)
LIMITS: dict[str, tuple | None] = {
    "pelvis": None,
    "left_hip": ((-125, 35), (-50, 50), (-35, 65)),  # flexion is -x, abduction +z
    "spine1": ((-30, 50), (-35, 35), (-30, 30)),
    "left_knee": ((-5, 150), (-25, 25), (-15, 15)),  # flexion is +x
    "spine2": ((-30, 45), (-35, 35), (-30, 30)),
    "left_ankle": ((-40, 55), (-35, 35), (-35, 35)),  # plantar flexion is +x
    "spine3": ((-30, 45), (-35, 35), (-30, 30)),
    "left_foot": ((-70, 45), (-20, 20), (-20, 20)),  # the toes; bending them up is -x
    "neck": ((-45, 50), (-60, 60), (-40, 40)),
    "left_collar": ((-25, 25), (-30, 30), (-15, 35)),
    "head": ((-40, 45), (-60, 60), (-35, 35)),
    "left_shoulder": None,  # see SHOULDER
    "left_elbow": ((-90, 90), (-150, 5), (-20, 20)),  # flexion is -y, forearm twist x
    "left_wrist": ((-90, 90), (-40, 40), (-85, 85)),
    "jaw": ((-5, 35), (-10, 10), (-10, 10)),
    "left_eye": ((-35, 35), (-35, 35), (-35, 35)),
    **{f"left_{f}{k}": (_FINGER_BASE if k == 1 else _FINGER_TIP)
       for f in ("index", "middle", "ring", "pinky") for k in (1, 2, 3)},
    **{f"left_thumb{k}": _THUMB for k in (1, 2, 3)},
}

# the left upper arm: behind the body it cannot rise far; near overhead the twist is undefined
SHOULDER = {"azimuth": (-135.0, 145.0), "free_below_elevation": 25.0, "behind_azimuth": -20.0,
            "behind_max_elevation": 75.0, "twist": (-95.0, 95.0), "twist_below_elevation": 160.0}


def _left_twin(name: str) -> str:
    return "left_" + name[len("right_"):] if name.startswith("right_") else name


def limit_table() -> torch.Tensor:
    """Box limits [55,3,2] in degrees for every joint as seen from its left twin (inf where unboxed)."""
    out = torch.empty(skeleton.NUM_JOINTS, 3, 2)
    for j, name in enumerate(skeleton.JOINT_NAMES):
        ranges = LIMITS[_left_twin(name)]
        out[j] = torch.tensor([[-math.inf, math.inf]] * 3) if ranges is None else torch.tensor(ranges, dtype=torch.float32)
    return out


def joint_angles(motion: Motion) -> torch.Tensor:
    """Rotation vectors [F,55,3] in degrees, right-side joints mirrored onto their left twins."""
    pose = motion.full_pose().to(torch.float64)
    right = torch.tensor([n.startswith("right_") for n in skeleton.JOINT_NAMES])
    return torch.rad2deg(torch.where(right[:, None], pose * pose.new_tensor([1.0, -1.0, -1.0]), pose))


def shoulder_angles(rotvec_deg: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Elevation, azimuth and twist (degrees, [...]) of left-shoulder rotation vectors [...,3]."""
    R = axis_angle_to_matrix(torch.deg2rad(rotvec_deg))
    d = R[..., :, 0]  # where the arm (rest +x) points
    elevation = torch.rad2deg(torch.acos(-d[..., 1].clamp(-1, 1)))
    azimuth = torch.rad2deg(torch.atan2(d[..., 2], d[..., 0]))
    # what is left after pointing the untwisted hanging arm along d is a turn about the arm (x)
    twist_R = quaternion_to_matrix(arm_rotation(d)).transpose(-1, -2).to(R.dtype) @ R
    twist = torch.rad2deg(torch.atan2(twist_R[..., 2, 1], twist_R[..., 1, 1]))
    return elevation, azimuth, twist


def _shoulder_violations(angles: torch.Tensor, tol: float) -> list[str]:
    lim = SHOULDER
    (az_lo, az_hi), (tw_lo, tw_hi) = lim["azimuth"], lim["twist"]
    out = []
    for side in ("left", "right"):
        el, az, tw = shoulder_angles(angles[:, skeleton.JOINT_INDEX[f"{side}_shoulder"]])
        raised = el >= lim["free_below_elevation"]
        checks = (
            ("azimuth", az, raised & ((az < az_lo - tol) | (az > az_hi + tol)), f"{az_lo:g}..{az_hi:g}"),
            ("elevation behind the body", el, (az < lim["behind_azimuth"]) & (el > lim["behind_max_elevation"] + tol),
             f"at most {lim['behind_max_elevation']:g}"),
            ("twist", tw, (el < lim["twist_below_elevation"]) & ((tw < tw_lo - tol) | (tw > tw_hi + tol)),
             f"{tw_lo:g}..{tw_hi:g}"),
        )
        for what, value, bad, allowed in checks:
            if bool(bad.any()):
                f = int(torch.nonzero(bad)[0])
                out.append(f"{side}_shoulder {what} = {float(value[f]):.1f} deg at frame {f} (allowed {allowed})")
    return out


def limit_violations(motion: Motion, tolerance: float = 0.0) -> list[str]:
    """Descriptions of every joint that leaves its range (by more than ``tolerance`` degrees); [] if none.

    One line per joint and axis (shoulders: per direction/twist check), with the first or worst frame.
    """
    angles = joint_angles(motion)
    table = limit_table().to(angles.dtype)
    excess = torch.maximum(table[..., 0] - tolerance - angles, angles - table[..., 1] - tolerance).clamp_min(0)
    out = []
    for j, axis in zip(*torch.nonzero(excess.amax(0) > 0, as_tuple=True)):
        f = int(excess[:, j, axis].argmax())
        lo, hi = table[j, axis].tolist()
        out.append(f"{skeleton.JOINT_NAMES[j]} {'xyz'[axis]} = {float(angles[f, j, axis]):.1f} deg at frame {f} "
                   f"(range {lo:g}..{hi:g})")
    return out + _shoulder_violations(angles, tolerance)
