"""The SMPL-X skeleton: 55 joints, their names and kinematic parents, in SMPL-X order.

This is the one place the skeleton is defined; both bodies and every motion use it.
"""
from __future__ import annotations

_HAND = [f"{finger}{i}" for finger in ("index", "middle", "pinky", "ring", "thumb") for i in (1, 2, 3)]

JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2",
    "left_ankle", "right_ankle", "spine3", "left_foot", "right_foot", "neck",
    "left_collar", "right_collar", "head", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "jaw", "left_eye", "right_eye",
    *(f"left_{j}" for j in _HAND), *(f"right_{j}" for j in _HAND),
)

# parent index of each joint (-1 for the root); every finger chain hangs off its wrist
PARENTS: tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 15, 15, 15,
    20, 25, 26, 20, 28, 29, 20, 31, 32, 20, 34, 35, 20, 37, 38,
    21, 40, 41, 21, 43, 44, 21, 46, 47, 21, 49, 50, 21, 52, 53,
)

NUM_JOINTS = 55
NUM_BODY_JOINTS = 21  # SMPL-X body_pose: joints 1..21
NUM_HAND_JOINTS = 15

JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

# slices of the 55-joint full pose, in the SMPL-X parameter order
ROOT = slice(0, 1)
BODY = slice(1, 22)
JAW = slice(22, 23)
LEYE = slice(23, 24)
REYE = slice(24, 25)
LHAND = slice(25, 40)
RHAND = slice(40, 55)

HEAD_JOINTS = tuple(JOINT_INDEX[n] for n in ("head", "jaw", "left_eye", "right_eye"))
LEFT_HAND_JOINTS = tuple(range(25, 40))
RIGHT_HAND_JOINTS = tuple(range(40, 55))


def mirror_index() -> tuple[int, ...]:
    """For each joint, the index of its left/right counterpart (itself on the midline)."""
    out = []
    for name in JOINT_NAMES:
        if name.startswith("left_"):
            out.append(JOINT_INDEX["right_" + name[5:]])
        elif name.startswith("right_"):
            out.append(JOINT_INDEX["left_" + name[6:]])
        else:
            out.append(JOINT_INDEX[name])
    return tuple(out)


assert len(JOINT_NAMES) == NUM_JOINTS and len(PARENTS) == NUM_JOINTS
assert all(p < i for i, p in enumerate(PARENTS)), "parents must precede children"
