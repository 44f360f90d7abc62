"""A small animation rig on the SMPL-X skeleton: forward kinematics and two-bone IK for the presets.

Presets set joint rotations directly (spine, head, arms) and place the feet (and, where hands must
meet a target, the wrists) in the world; the rig solves hip/knee/ankle and shoulder/elbow/wrist
rotations analytically so planted feet stay exactly where they were put. Everything runs in
float64 on a rest skeleton (joints [55,3], zero pose, y up, facing +z, left at +x); the result is
a ``Motion`` whose ``trans`` puts the pelvis where the preset asked.

Joint axes at rest coincide with the world's, which gives the authoring conventions:
hip flexion is -x, knee flexion +x, ankle plantar flexion +x; spine and head bend forward with +x
and turn left with +y; the left arm (along +x) rises with +z and comes forward with -y. Arms are
posed by direction (``arm_rotation``), the way the joint limits measure them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..body import skeleton
from ..geometry import axis_angle_to_quaternion, batch_rigid_transform, matrix_to_quaternion, quaternion_to_matrix
from .curves import quat_mul, quaternion_to_axis_angle, rotation_keys, scalar_keys, slerp
from .motion import Motion

J = skeleton.JOINT_INDEX
_DT = torch.float64
_X = torch.tensor([1.0, 0.0, 0.0], dtype=_DT)
_Y = torch.tensor([0.0, 1.0, 0.0], dtype=_DT)
_YZ = torch.tensor([0.0, 1.0, 1.0], dtype=_DT)  # the plane the knee flexes in
_IDENTITY = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=_DT)
# the left shoulder's rotation that lowers the T-pose arm to hang at the side: -90 deg about z
HANGING_ARM = torch.tensor([math.cos(math.pi / 4), 0.0, 0.0, -math.sin(math.pi / 4)], dtype=_DT)

__all__ = ["Rig", "Builder", "quat", "qx", "qy", "qz", "arm_direction", "arm_rotation", "smoothstep", "mirror_quat"]


def quat(*rotvec_deg) -> torch.Tensor:
    """Quaternion [...,4] of a rotation vector in degrees, given as (x, y, z) or a tensor [...,3]."""
    v = torch.as_tensor(rotvec_deg[0] if len(rotvec_deg) == 1 else rotvec_deg, dtype=_DT)
    return axis_angle_to_quaternion(torch.deg2rad(v))


def _axis(axis: int, deg) -> torch.Tensor:
    deg = torch.as_tensor(deg, dtype=_DT)
    v = torch.zeros(*deg.shape, 3, dtype=_DT)
    v[..., axis] = deg
    return quat(v)


def qx(deg) -> torch.Tensor:
    """Rotation about x by ``deg`` degrees (scalar or [F])."""
    return _axis(0, deg)


def qy(deg) -> torch.Tensor:
    """Rotation about y by ``deg`` degrees (scalar or [F])."""
    return _axis(1, deg)


def qz(deg) -> torch.Tensor:
    """Rotation about z by ``deg`` degrees (scalar or [F])."""
    return _axis(2, deg)


def arm_direction(abduction=0.0, flexion=0.0) -> torch.Tensor:
    """Unit direction [...,3] of a left arm raised sideways by ``abduction`` from hanging, then
    swung forward by ``flexion`` (degrees; meant for arms below the shoulder)."""
    a = torch.deg2rad(torch.as_tensor(abduction, dtype=_DT))
    f = torch.deg2rad(torch.as_tensor(flexion, dtype=_DT))
    a, f = torch.broadcast_tensors(a, f)
    return torch.stack([torch.sin(a), -torch.cos(a) * torch.cos(f), torch.cos(a) * torch.sin(f)], dim=-1)


def arm_rotation(direction, twist=0.0) -> torch.Tensor:
    """Left shoulder rotation [...,4] pointing the upper arm along ``direction`` [...,3].

    The arm is the hanging arm (elbow crease forward) swung the shortest way onto ``direction``,
    then turned about itself by ``twist`` degrees (positive turns the crease towards the body, an
    internal rotation; negative turns it out, so a bent elbow of a raised arm lifts the hand).
    Straight up is reached from the side: keep some +x in overhead directions.
    """
    d = torch.nn.functional.normalize(torch.as_tensor(direction, dtype=_DT), dim=-1)
    hang = d.new_tensor([0.0, -1.0, 0.0]).expand_as(d)
    w = 1.0 + (d * hang).sum(-1, keepdim=True)
    swing = torch.cat([w, torch.cross(hang, d, dim=-1)], dim=-1)
    # exactly overhead: the half turn of a sideways raise (about +z)
    swing = torch.where(w < 1e-9, swing.new_tensor([0.0, 0.0, 0.0, 1.0]), swing)
    swing = torch.nn.functional.normalize(swing, dim=-1)
    twist = torch.as_tensor(twist, dtype=_DT)
    return quat_mul(quat_mul(swing, HANGING_ARM.expand_as(swing)), qx(twist).expand_as(swing))


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """0 -> 1 with zero slope at both ends (x clamped to [0, 1])."""
    x = x.clamp(0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def mirror_quat(q: torch.Tensor) -> torch.Tensor:
    """A left-side rotation as its right-side twin (mirror across x = 0)."""
    return q * q.new_tensor([1.0, 1.0, -1.0, -1.0])


@dataclass
class Rig:
    """Rest skeleton the presets are solved on: joints [55,3] in the zero pose."""

    joints: torch.Tensor

    @classmethod
    def for_body(cls, body=None) -> "Rig":
        """The rig of a Body or Avatar (its shaped rest joints); the free body when None."""
        if body is None:
            from ..body import load_body

            body = load_body("free")
        from ..avatar import Avatar  # imported late: the avatar module imports this package

        if isinstance(body, Avatar):
            joints = body.body.shaped_joints(body.betas)
        else:
            joints = body.joints
        return cls(joints.detach().to(_DT).cpu())

    def __post_init__(self) -> None:
        self.joints = self.joints.to(_DT)

    def j(self, name: str) -> torch.Tensor:
        """Rest position [3] of a joint."""
        return self.joints[J[name]]

    def bone(self, parent: str, child: str) -> float:
        """Rest distance between two joints."""
        return float((self.j(child) - self.j(parent)).norm())

    def reach(self, side: str) -> float:
        """Longest hip-to-ankle distance of a leg whose knee is no straighter than at rest."""
        hip, knee, ankle = (self.j(f"{side}_{n}") for n in ("hip", "knee", "ankle"))
        u1, u2 = knee - hip, ankle - knee
        p1, p2 = u1 * _YZ, u2 * _YZ  # the parts across the knee's hinge (x)
        # a rest knee bent backwards may still straighten fully; otherwise rest is the longest
        across = float(p1.norm() * p2.norm()) if float(torch.cross(p1, p2, dim=0)[0]) < 0 else float(p1 @ p2)
        return math.sqrt(float(u1 @ u1 + u2 @ u2) + 2 * (float(u1[0] * u2[0]) + across))

    @property
    def leg_length(self) -> float:
        """Hip to ankle along the bones."""
        return self.bone("left_hip", "left_knee") + self.bone("left_knee", "left_ankle")

    def fk(self, local: torch.Tensor, pelvis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Global rotations [F,55,3,3] and positions [F,55,3] for local quats [F,55,4], pelvis [F,3]."""
        rot = quaternion_to_matrix(local)
        posed, A = batch_rigid_transform(rot, self.joints.expand(len(local), -1, -1), skeleton.PARENTS)
        return A[..., :3, :3], posed + (pelvis - self.joints[0])[:, None]


def _frame(primary: torch.Tensor, secondary: torch.Tensor) -> torch.Tensor:
    """Orthonormal frames [F,3,3] (columns) from a primary direction and a secondary hint."""
    e1 = torch.nn.functional.normalize(primary, dim=-1)
    e2 = torch.nn.functional.normalize(secondary - (secondary * e1).sum(-1, keepdim=True) * e1, dim=-1)
    return torch.stack([e1, e2, torch.cross(e1, e2, dim=-1)], dim=-1)


def two_bone_ik(root: torch.Tensor, target: torch.Tensor, hinge_world: torch.Tensor, parent_rot: torch.Tensor,
                a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, hinge: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Analytic IK of a hinge chain a -> b -> c (rest positions [3]) reaching ``target`` [F,3].

    ``root`` [F,3] is where joint a is in the world, ``parent_rot`` [F,3,3] the global rotation of
    a's parent, ``hinge`` the rest axis [3] about which positive angles flex b and ``hinge_world``
    [F,3] the world direction that axis should take. Returns the local quaternions of a and b
    [F,4] and the global rotation of b [F,3,3]. Out-of-reach targets are approached along the
    line to them, the hinge no straighter than at rest.
    """
    u1, u2 = b - a, c - b
    hinge = torch.nn.functional.normalize(hinge, dim=0)
    L1, L2 = float(u1.norm()), float(u2.norm())
    reach = target - root
    d = reach.norm(dim=-1).clamp(abs(L1 - L2) + 1e-4, (L1 + L2) * (1 - 1e-6))
    # |u1 + R_hinge(theta) u2| = d: only the parts of u1, u2 across the hinge turn against each other
    p1 = u1 - (u1 @ hinge) * hinge
    p2 = u2 - (u2 @ hinge) * hinge
    alpha0 = torch.atan2(torch.dot(torch.cross(p1, p2, dim=0), hinge), torch.dot(p1, p2))
    cos = ((d * d - L1 * L1 - L2 * L2) / 2 - torch.dot(u1, u2 - p2)) / (p1.norm() * p2.norm())
    # a hinge flexes one way only: never straighter than at rest (out-of-reach targets stay short)
    theta = (torch.acos(cos.clamp(-1.0, 1.0)) - alpha0).clamp_min(0.0)
    q_b = axis_angle_to_quaternion(theta[:, None] * hinge)
    R_b = quaternion_to_matrix(q_b)
    v = u1 + (R_b @ u2[:, None])[..., 0]  # a-to-c in a's rest frame
    G_a = _frame(reach, hinge_world) @ _frame(v, hinge.expand_as(v)).transpose(-1, -2)
    q_a = matrix_to_quaternion(parent_rot.transpose(-1, -2) @ G_a)
    return q_a, q_b, G_a @ R_b


class Builder:
    """Collects one preset: joint rotations, pelvis path and foot/hand targets, then solves it.

    Times are ``self.t`` [F] in seconds. Rotations are quaternions [F,4] (or [4], held).
    """

    def __init__(self, rig: Rig, duration: float, fps: float = 30.0, loops: bool = True):
        self.rig = rig
        self.fps = fps
        self.loops = loops
        self.F = int(round(duration * fps))
        self.t = torch.arange(self.F, dtype=_DT) / fps
        self.duration = duration
        self.local = torch.zeros(self.F, skeleton.NUM_JOINTS, 4, dtype=_DT)
        self.local[..., 0] = 1.0
        self.root = self.local[:, 0].clone()
        self.pelvis = rig.j("pelvis").expand(self.F, 3).clone()
        self.feet: dict[str, tuple] = {}
        self.hands: dict[str, tuple] = {}
        self.contacts = torch.zeros(self.F, 2, dtype=torch.bool)

    # --- time helpers -------------------------------------------------------------------------

    def wave(self, period: float, offset: float = 0.0) -> torch.Tensor:
        """sin(2 pi phase): a smooth oscillation in [-1, 1]."""
        return torch.sin(2 * math.pi * (self.t / period + offset))

    def keys(self, times, values, period: float | None = None) -> torch.Tensor:
        """Monotone cubic through keyed values [K] or [K,D] at ``times`` [K] (seconds)."""
        return scalar_keys(times, torch.as_tensor(values, dtype=_DT), self.t, period)

    def hermite(self, times, values, slopes) -> torch.Tensor:
        """Piecewise cubic through keyed values with keyed slopes (units per second), held outside."""
        times, values, slopes = (torch.as_tensor(x, dtype=_DT) for x in (times, values, slopes))
        t = self.t.clamp(float(times[0]), float(times[-1]))
        i = (torch.searchsorted(times, t, right=True) - 1).clamp(0, len(times) - 2)
        h = times[i + 1] - times[i]
        s = (t - times[i]) / h
        h00, h10 = 2 * s**3 - 3 * s**2 + 1, s**3 - 2 * s**2 + s
        h01, h11 = -2 * s**3 + 3 * s**2, s**3 - s**2
        return h00 * values[i] + h10 * h * slopes[i] + h01 * values[i + 1] + h11 * h * slopes[i + 1]

    def rot_keys(self, times, quats, period: float | None = None) -> torch.Tensor:
        """Catmull-Rom on quaternions keyed at ``times``: [K,4] (or a list of [4]) -> [F,4]."""
        quats = quats if torch.is_tensor(quats) else torch.stack(list(quats))
        return rotation_keys(times, quats, self.t, period)

    # --- setting the pose ---------------------------------------------------------------------

    def set(self, joint: str, q: torch.Tensor, mirror: bool = False) -> None:
        """Local rotation of ``joint``; with ``mirror`` also its right/left twin, mirrored."""
        self.local[:, J[joint]] = q.to(_DT).expand(self.F, 4)
        if mirror:
            twin = skeleton.JOINT_NAMES[skeleton.mirror_index()[J[joint]]]
            self.local[:, J[twin]] = mirror_quat(q.to(_DT).expand(self.F, 4))

    def turn(self, joint: str, q: torch.Tensor) -> None:
        """Compose an extra rotation after the current local rotation of ``joint`` (parent side)."""
        self.local[:, J[joint]] = quat_mul(q.to(_DT).expand(self.F, 4), self.local[:, J[joint]])

    def spread(self, joints: tuple[str, ...], q_total: torch.Tensor) -> None:
        """Share a rotation [F,4] equally among a chain of joints (e.g. the three spine joints)."""
        aa = quaternion_to_axis_angle(q_total.to(_DT).expand(self.F, 4)) / len(joints)
        for name in joints:
            self.turn(name, axis_angle_to_quaternion(aa))

    def hands_relaxed(self, curl: float = 15.0) -> None:
        """A natural half-open hand on both sides: fingers curled a little, more towards the pinky."""
        for finger, extra in (("index", 0.0), ("middle", 4.0), ("ring", 8.0), ("pinky", 12.0)):
            for k, scale in ((1, 0.7), (2, 1.0), (3, 0.6)):
                # left fingers point +x with the palm at -y: curling towards the palm is -z
                self.set(f"left_{finger}{k}", qz(-(curl + extra) * scale), mirror=True)
        self.set("left_thumb1", quat(0.0, 10.0, -5.0), mirror=True)

    def foot(self, side: str, ball: torch.Tensor, yaw=0.0, pitch=0.0, toes_flat=1.0, contact=None) -> None:
        """Place a foot: the ball joint at ``ball`` [F,3], heading ``yaw`` and heel raised by ``pitch``
        (degrees about the ball; negative lifts the toes); the knee points where the foot does.
        ``toes_flat`` 1 keeps the toes level with the floor. ``contact`` [F] bool marks frames
        with the foot on the ground.
        """
        F = self.F
        yaw = torch.as_tensor(yaw, dtype=_DT).expand(F)
        pitch = torch.as_tensor(pitch, dtype=_DT).expand(F)
        self.feet[side] = (ball.to(_DT), yaw, pitch, torch.as_tensor(toes_flat, dtype=_DT).expand(F))
        if contact is not None:
            self.contacts[:, 0 if side == "left" else 1] = contact

    def hand(self, side: str, wrist: torch.Tensor, elbow_hint: torch.Tensor, hand_rot: torch.Tensor | None = None) -> None:
        """Put a wrist at ``wrist`` [F,3], the elbow bulging towards ``elbow_hint`` [F,3] (world
        direction); ``hand_rot`` [F,4] the hand's global rotation (default: follows the forearm).
        """
        self.hands[side] = (wrist.to(_DT), elbow_hint.to(_DT).expand(self.F, 3), hand_rot)

    # --- solving ------------------------------------------------------------------------------

    def _ankle_target(self, side: str, ball: torch.Tensor, yaw: torch.Tensor, pitch: torch.Tensor):
        """The foot's global rotation [F,3,3] and where its ankle must be [F,3]."""
        R_foot = quaternion_to_matrix(quat_mul(qy(yaw), qx(pitch)))
        offset = self.rig.j(f"{side}_ankle") - self.rig.j(f"{side}_foot")
        return R_foot, ball + (R_foot @ offset[:, None])[..., 0]

    def _reach_drop(self, targets: dict, P: torch.Tensor) -> torch.Tensor:
        """How far [F] the pelvis must come down for every planted leg to reach its foot.

        Zero where the preset's own pelvis path suffices (always, on the skeleton it was written
        for); on shorter legs it bends the knees instead of lifting planted feet off the floor.
        """
        need = torch.zeros(self.F, dtype=_DT)
        for s, (_, ankle) in targets.items():
            reach = self.rig.reach(s) * (1 - 1e-6)
            d = ankle - P[:, J[f"{s}_hip"]]
            level = (reach**2 - d[:, 0] ** 2 - d[:, 2] ** 2).clamp_min(0).sqrt()
            deficit = (-d[:, 1] - level).clamp_min(0)
            need = torch.maximum(need, torch.where(self.contacts[:, 0 if s == "left" else 1], deficit, 0.0))
        if not bool((need > 0).any()):
            return need
        # ease in and out over ~0.2 s: a max filter, then a box blur of the same width keeps >= need
        w = max(1, int(0.1 * self.fps))
        pad = (lambda x: torch.cat([x[-w:], x, x[:w]])) if self.loops else \
            (lambda x: torch.cat([x[:1].expand(w), x, x[-1:].expand(w)]))
        need = torch.nn.functional.max_pool1d(pad(need)[None, None], 2 * w + 1, stride=1)[0, 0]
        need = torch.nn.functional.avg_pool1d(pad(need)[None, None], 2 * w + 1, stride=1)[0, 0]
        return need


    def build(self, name: str) -> Motion:
        """Solve the limbs and return the Motion (contacts and looping flag included)."""
        rig = self.rig
        self.local[:, 0] = self.root
        G, P = rig.fk(self.local, self.pelvis)
        targets = {s: self._ankle_target(s, *foot[:3]) for s, foot in self.feet.items()}
        down = self._reach_drop(targets, P)[:, None] * _Y
        self.pelvis = self.pelvis - down
        P = P - down[:, None]
        for s, (ball, yaw, pitch, toes_flat) in self.feet.items():
            R_foot, ankle_target = targets[s]
            # the knee flexes about the foot's left-right axis, so it points where the foot does
            hinge_world = (quaternion_to_matrix(qy(yaw)) @ _X[:, None])[..., 0]
            q_hip, q_knee, G_knee = two_bone_ik(
                P[:, J[f"{s}_hip"]], ankle_target, hinge_world, G[:, 0], rig.j(f"{s}_hip"), rig.j(f"{s}_knee"),
                rig.j(f"{s}_ankle"), _X)
            q_ankle = matrix_to_quaternion(G_knee.transpose(-1, -2) @ R_foot)
            # toes level: undo the heel raise at the toe joint, as far as asked
            q_toes = slerp(_IDENTITY.expand(self.F, 4), qx(-pitch), toes_flat)
            for joint, q in ((f"{s}_hip", q_hip), (f"{s}_knee", q_knee), (f"{s}_ankle", q_ankle), (f"{s}_foot", q_toes)):
                self.local[:, J[joint]] = q
        for s, (wrist, bulge, hand_rot) in self.hands.items():
            sign = 1.0 if s == "left" else -1.0
            shoulder = P[:, J[f"{s}_shoulder"]]
            # an elbow bulging away from the shoulder-wrist line bends about bulge x line
            hinge_world = torch.cross(bulge, wrist - shoulder, dim=-1)
            q_sh, q_el, G_el = two_bone_ik(
                shoulder, wrist, hinge_world, G[:, J[f"{s}_collar"]], rig.j(f"{s}_shoulder"),
                rig.j(f"{s}_elbow"), rig.j(f"{s}_wrist"), torch.tensor([0.0, -sign, 0.0], dtype=_DT))
            self.local[:, J[f"{s}_shoulder"]] = q_sh
            self.local[:, J[f"{s}_elbow"]] = q_el
            if hand_rot is not None:
                hand = quaternion_to_matrix(hand_rot.to(_DT))
                self.local[:, J[f"{s}_wrist"]] = matrix_to_quaternion(G_el.transpose(-1, -2) @ hand)
        pose = quaternion_to_axis_angle(self.local).to(torch.float32)
        trans = (self.pelvis - rig.j("pelvis")).to(torch.float32)
        return Motion.from_full_pose(pose, trans, fps=self.fps, name=name, contacts=self.contacts.clone(), loops=self.loops)
