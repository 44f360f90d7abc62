"""Built-in motions, authored in code on the SMPL-X skeleton.

Each preset is a short function that keys the pelvis, spine, head and arms (monotone cubic keys,
Catmull-Rom on quaternions, or closed-form cycles) and plants the feet with footsteps; the rig
(``rig.py``) solves the legs by IK, so grounded feet stay exactly on the floor without sliding.
Presets are solved on the free body's skeleton by default, or on any body's (``body=``), which
keeps the feet planted on that body too. All run at 30 fps, last 2-8 s and, where natural, loop
seamlessly (``Motion.loops``): the frame after the last is the first again (plus a walk's
stride). ``Motion.contacts`` says which foot is on the ground in each frame.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import torch

from ..geometry import matrix_to_quaternion, quaternion_to_matrix
from .curves import quat_mul
from .motion import Motion
from .rig import Builder, Rig, arm_direction, arm_rotation, mirror_quat, qx, qy, qz, smoothstep

FPS = 30.0
REFERENCE_LEG = 0.82  # hip-to-ankle bone length (m) of the free body, which the presets are authored on
PREVIEW_DIR = Path(__file__).resolve().parent / "previews"
_DT = torch.float64


@dataclass(frozen=True)
class PresetInfo:
    """What a UI needs to offer a preset: its name, a display name, duration, preview image."""

    name: str
    display_name: str
    duration: float
    loops: bool
    preview: Path | None


@dataclass(frozen=True)
class _Preset:
    display_name: str
    duration: float
    loops: bool
    make: Callable[[Builder], None]


# ---------------------------------------------------------------------------------------------
# shared pieces


def _min_jerk(s: torch.Tensor) -> torch.Tensor:
    # 0 -> 1 with zero velocity and acceleration at both ends: how a foot travels through a step
    s = s.clamp(0.0, 1.0)
    return s ** 3 * (10 - 15 * s + 6 * s * s)


@dataclass
class Step:
    """One footstep: the foot leaves at ``t0``, lands at ``t1`` at ``to`` (x, z) with heading ``yaw``.

    ``lift`` is the ball's peak height (m), ``heel`` the heel raise (deg) reached at lift-off,
    ``roll`` how long before lift-off the heel starts to rise (s).
    """

    t0: float
    t1: float
    to: tuple[float, float]
    yaw: float = 0.0
    lift: float = 0.08
    heel: float = 25.0
    roll: float = 0.15


def footwork(b: Builder, side: str, steps: list[Step], start: tuple[float, float] | None = None,
             start_yaw: float = 0.0) -> None:
    """Plant one foot and move it through ``steps`` (sorted by time, not overlapping).

    Between steps the ball of the foot rests on the floor, flat; in a step it rolls onto the
    ball, lifts, travels on a minimum-jerk path and lands flat. ``start`` is the resting (x, z)
    before the first step (default: the rest pose). Steps may start before 0 or end after the
    clip, which is how looping gaits are written.
    """
    rest = b.rig.j(f"{side}_foot")
    x0, z0 = (float(rest[0]), float(rest[2])) if start is None else start
    t = b.t
    pos = torch.zeros(b.F, 2, dtype=_DT)
    pos[:, 0], pos[:, 1] = x0, z0
    yaw = torch.full((b.F,), float(start_yaw), dtype=_DT)
    lift = torch.zeros(b.F, dtype=_DT)
    pitch = torch.zeros(b.F, dtype=_DT)
    toes = torch.ones(b.F, dtype=_DT)
    contact = torch.ones(b.F, dtype=torch.bool)
    prev_pos, prev_yaw = torch.tensor([x0, z0], dtype=_DT), float(start_yaw)
    for st in steps:
        to = torch.tensor(st.to, dtype=_DT)
        after = t >= st.t1
        pos[after], yaw[after] = to, st.yaw
        rolling = (t >= st.t0 - st.roll) & (t < st.t0)
        pitch[rolling] = st.heel * smoothstep((t[rolling] - (st.t0 - st.roll)) / st.roll)
        swing = (t >= st.t0) & (t < st.t1)
        s = (t[swing] - st.t0) / (st.t1 - st.t0)
        e = _min_jerk(s)
        pos[swing] = prev_pos + (to - prev_pos) * e[:, None]
        yaw[swing] = prev_yaw + (st.yaw - prev_yaw) * e
        lift[swing] = st.lift * 16 * s * s * (1 - s) ** 2
        # the heel comes down during the swing so the foot lands flat; toes relax off the floor
        pitch[swing] = st.heel * (1 - smoothstep((s - 0.2) / 0.75))
        toes[swing] = 1 - smoothstep(s / 0.4)
        contact[swing] = False
        prev_pos, prev_yaw = to, st.yaw
    ball = torch.stack([pos[:, 0], rest[1] + lift, pos[:, 1]], dim=-1)
    b.foot(side, ball, yaw=yaw, pitch=pitch, toes_flat=toes, contact=contact)


def stand(b: Builder) -> None:
    """Both feet planted where the rest pose has them."""
    footwork(b, "left", [])
    footwork(b, "right", [])


def arms_hanging(b: Builder, abduction=8.0, flexion=0.0, elbow=12.0, twist=0.0, side: str | None = None) -> None:
    """Arms from the sides (scalars or [F] tracks in degrees, see ``arm_direction``); one ``side`` or both."""
    for s in ("left", "right") if side is None else (side,):
        b.set(f"{s}_shoulder", _side(arm_rotation(arm_direction(abduction, flexion), twist), s))
        b.set(f"{s}_elbow", _side(qy(-torch.as_tensor(elbow, dtype=_DT)), s))


def breathe(b: Builder, period: float, depth: float = 1.0) -> None:
    """Chest and shoulders rise and fall (degrees scale with ``depth``)."""
    w = b.wave(period)
    b.spread(("spine2", "spine3"), qx(-1.2 * depth * w))
    b.turn("left_collar", qz(1.5 * depth * w))
    b.turn("right_collar", qz(-1.5 * depth * w))


def _side(q: torch.Tensor, side: str) -> torch.Tensor:
    """A left-side rotation, mirrored when it is for the right side."""
    return q if side == "left" else mirror_quat(q)


def _pelvis_offset(b: Builder, dx=0.0, dy=0.0, dz=0.0) -> None:
    b.pelvis = b.pelvis + torch.stack([torch.as_tensor(v, dtype=_DT).expand(b.F) for v in (dx, dy, dz)], dim=-1)


def _hand_frame(fingers: torch.Tensor, palm: torch.Tensor) -> torch.Tensor:
    """Global quaternion of a left hand whose fingers point along ``fingers`` and palm faces ``palm``."""
    x = torch.nn.functional.normalize(fingers, dim=-1)
    y = -palm  # the left palm faces -y at rest
    y = torch.nn.functional.normalize(y - (y * x).sum(-1, keepdim=True) * x, dim=-1)
    return matrix_to_quaternion(torch.stack([x, y, torch.cross(x, y, dim=-1)], dim=-1))


# ---------------------------------------------------------------------------------------------
# the presets


def _idle(b: Builder) -> None:
    """Standing at ease: breathing, weight drifting between the feet, small head movements."""
    T = b.duration
    stand(b)
    # weight drifts from foot to foot and the body sways a little
    _pelvis_offset(b, dx=0.012 * b.wave(T), dy=-0.004 - 0.002 * b.wave(T / 2, 0.25), dz=0.004 * b.wave(T, 0.3))
    b.root = qz(0.8 * b.wave(T))
    breathe(b, T / 2)
    b.spread(("spine1", "spine2"), qz(-0.8 * b.wave(T)))
    b.set("neck", quat_mul(qy(4.0 * b.wave(T, 0.1)), qx(2.0 + 1.0 * b.wave(T / 2, 0.4))))
    b.set("head", qz(1.5 * b.wave(T, 0.6)))
    arms_hanging(b, abduction=9 + 1.5 * b.wave(T / 2), flexion=2 * b.wave(T, 0.2), elbow=14 + 2 * b.wave(T / 2))
    b.hands_relaxed(18)


def _wave(b: Builder) -> None:
    """Raise the right hand and wave from the elbow, then lower it."""
    T = b.duration
    stand(b)
    breathe(b, T / 2, 0.7)
    b.hands_relaxed(15)
    up = b.keys([0.0, 0.45, 0.9, T - 0.8, T - 0.25, T], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    # the hand rocks left-right from the elbow, the forearm upright, palm to the front
    rock = b.wave(0.55) * smoothstep((b.t - 0.8) / 0.3) * smoothstep((T - 0.75 - b.t) / 0.3)
    arms_hanging(b, side="left", abduction=9.0, elbow=14.0)
    raised = torch.nn.functional.normalize(torch.tensor([1.0, 0.2, 0.3], dtype=_DT), dim=0)
    direction = arm_direction(9.0, 0.0) + (raised - arm_direction(9.0, 0.0)) * up[:, None]
    b.set("right_shoulder", mirror_quat(arm_rotation(direction, -85 * up)))
    b.set("right_elbow", mirror_quat(qy(-(14 + (76 + 22 * rock) * up))))
    b.set("right_wrist", mirror_quat(qz(-8 * rock * up)))
    b.turn("right_collar", mirror_quat(qz(6 * up)))
    _pelvis_offset(b, dx=0.008 * up)
    b.set("neck", quat_mul(qy(-6 * up), qz(3 * up)))
    b.set("head", qx(-3 * up))


def _gait(b: Builder, period: float, stride: float, lift: float, heel: float, stance: float, drop: float,
          bob: float, sway: float, arm_swing: float, roll: float, ahead: float = 0.0, run: bool = False) -> None:
    """A cyclic gait along +z: ``stride`` (m per cycle, 0 in place), each foot on the floor for
    ``stance`` of the cycle and rolling onto its ball for the last ``roll`` of it (s), planted
    ``ahead`` (m) of where the pelvis is at mid-stance; the pelvis drops by ``drop`` and bobs/sways
    by ``bob``/``sway``.
    """
    # lengths are authored for the free body's legs: shorter legs take shorter steps
    scale = b.rig.leg_length / REFERENCE_LEG
    stride, lift, drop, bob, sway, ahead = (scale * x for x in (stride, lift, drop, bob, sway, ahead))
    T = period
    v = stride / T
    cycles = range(-2, int(b.duration / T) + 3)
    for side, offset in (("left", 0.0), ("right", 0.5)):
        rest = b.rig.j(f"{side}_foot")
        # at mid-stance the foot is under the pelvis, its ankle a little ahead (heels rise behind)
        steps = []
        for k in cycles:
            lift_off = (k + offset + stance) * T
            land = (k + offset + 1.0) * T
            z_land = float(rest[2]) + v * (land + stance * T / 2) + ahead
            steps.append(Step(lift_off, land, (float(rest[0]), z_land), lift=lift, heel=heel, roll=roll))
        first = steps[0]
        start_z = first.to[1] - stride
        footwork(b, side, steps, start=(float(rest[0]), start_z))
    ph = 2 * math.pi * b.t / T
    # walking peaks at mid-stance, running bottoms out there; the pelvis leans over the stance foot
    mid = 2 * math.pi * stance / 2
    bob_track = bob * torch.cos(2 * (ph - mid)) * (-1 if run else 1)
    _pelvis_offset(b, dx=sway * torch.sin(ph), dy=-drop + bob_track, dz=v * b.t)
    # the left leg is furthest forward at phase 0: pelvis turns with it, chest and arms against it
    forward = torch.cos(ph)
    turn = 5.0 if stride else 2.5
    b.root = quat_mul(qy(-turn * forward), qx(8.0 if run else 3.0))
    b.spread(("spine1", "spine2", "spine3"), qy(1.4 * turn * forward))
    elbow = 75.0 if run else 16.0
    for side, sign in (("left", -1.0), ("right", 1.0)):
        swing = sign * arm_swing * forward
        bend = (15 if run else 6) * swing.clamp_min(0) / arm_swing  # the forward arm bends more
        arms_hanging(b, side=side, abduction=9.0, flexion=swing, elbow=elbow + bend)
    b.set("neck", qx(-2.0 - (6.0 if run else 0.0)))
    b.hands_relaxed(35 if run else 15)


def _walk_in_place(b: Builder) -> None:
    """Marching on the spot: knees up, arms swinging, the planted foot never moving."""
    _gait(b, period=1.0, stride=0.0, lift=0.13, heel=30.0, stance=0.6, drop=0.01, bob=0.008, sway=0.02, arm_swing=22.0,
          roll=0.12)


def _walk(b: Builder) -> None:
    """Walking forward (+z) at about 1.1 m/s."""
    _gait(b, period=1.1, stride=1.25, lift=0.07, heel=35.0, stance=0.62, drop=0.04, bob=0.012, sway=0.02, arm_swing=20.0,
          roll=0.3, ahead=-0.1)


def _run(b: Builder) -> None:
    """Jogging forward (+z) at about 2.2 m/s, with flight phases."""
    _gait(b, period=0.72, stride=1.55, lift=0.22, heel=35.0, stance=0.35, drop=0.058, bob=0.025, sway=0.012,
          arm_swing=35.0, roll=0.14, run=True)


def _jump(b: Builder) -> None:
    """A vertical jump: crouch with arms back, throw them up, a ballistic flight, a soft landing."""
    g = 9.81
    flight = 0.42
    v0 = g * flight / 2
    t_push, t_off = 1.0, 1.22
    t_land = t_off + flight
    y_off = 0.04  # pelvis at take-off: legs straight, heels up
    tau = (b.t - t_off).clamp(0, flight)
    air = (b.t > t_off) & (b.t < t_land)
    ground_y = b.hermite([0.0, 0.45, t_push, t_off, t_land, 1.95, 2.5, b.duration],
                         [0.0, 0.0, -0.17, y_off, y_off, -0.14, 0.0, 0.0],
                         [0.0, 0.0, 0.0, v0, -v0, 0.0, 0.0, 0.0])
    ballistic = y_off + v0 * tau - g * tau * tau / 2
    y = torch.where(air, ballistic, ground_y)
    _pelvis_offset(b, dy=y, dz=b.keys([0.0, 0.45, t_push, t_off, 1.95, 2.5], [0.0, 0.0, -0.05, 0.0, -0.04, 0.0]))
    crouch = (-y).clamp_min(0) / 0.17
    b.root = qx(22 * crouch)
    b.spread(("spine1", "spine2", "spine3"), qx(12 * crouch))
    b.set("neck", qx(-14 * crouch))
    # arms: back while crouching, thrown up at take-off, down again on landing
    flex = b.keys([0.0, 0.45, t_push, t_off, t_off + 0.2, t_land, 1.95, 2.5],
                  [0.0, 0.0, -45.0, 120.0, 150.0, 60.0, 20.0, 0.0])
    arms_hanging(b, abduction=10.0 + 10 * smoothstep(flex / 150), flexion=flex, elbow=15.0)
    b.hands_relaxed(20)
    # heels rise through the push, toes point in the air, land on the balls and roll down
    pitch = b.keys([0.0, t_push, t_off, t_off + 0.2, t_land, t_land + 0.1, b.duration],
                   [0.0, 0.0, 35.0, 30.0, 22.0, 0.0, 0.0])
    tuck = 0.06 * torch.sin(math.pi * tau / flight)
    for side in ("left", "right"):
        rest = b.rig.j(f"{side}_foot")
        ball = rest.expand(b.F, 3).clone()
        ball[:, 1] += torch.where(air, ballistic - y_off + tuck, torch.zeros_like(y))
        b.foot(side, ball, pitch=pitch, toes_flat=torch.where(air, 0.0, 1.0).to(_DT), contact=~air)


def _squat(b: Builder) -> None:
    """Two deep squats, heels down, arms forward for balance."""
    stand(b)
    rep = 2.0
    tt = torch.remainder(b.t, rep)
    u = smoothstep((tt - 0.25) / 0.75) - smoothstep((tt - 1.2) / 0.65)
    drop = 0.43 * b.rig.leg_length
    _pelvis_offset(b, dy=-drop * u, dz=-0.14 * u)
    b.root = qx(32 * u)
    b.spread(("spine1", "spine2", "spine3"), qx(12 * u))
    b.set("neck", qx(-22 * u))
    b.set("head", qx(-8 * u))
    arms_hanging(b, abduction=9 + 6 * u, flexion=88 * u, elbow=12 - 6 * u)
    b.hands_relaxed(12)


def _bow(b: Builder) -> None:
    """A polite bow from the hips, hands at the sides."""
    stand(b)
    u = b.keys([0.0, 0.5, 1.2, 1.9, 2.6, 3.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    _pelvis_offset(b, dy=-0.01 * u, dz=-0.09 * u)
    b.root = qx(38 * u)
    b.spread(("spine1", "spine2", "spine3"), qx(12 * u))
    b.set("neck", qx(8 * u))
    arms_hanging(b, abduction=7.0, flexion=22 * u, elbow=10.0)
    b.hands_relaxed(10)


def _clap(b: Builder) -> None:
    """Clapping in front of the chest, eight claps."""
    period = 0.4  # a clap every 0.4 s: 8 in the loop
    stand(b)
    breathe(b, b.duration / 2, 0.5)
    _pelvis_offset(b, dy=-0.008 * (1 + torch.cos(2 * math.pi * b.t / period)))
    b.set("neck", qx(3 + 2 * torch.cos(2 * math.pi * b.t / period)))
    rig = b.rig
    chest = rig.j("spine3")
    # the wrists meet 3 cm off the midline, where the palms touch; the gap opens and snaps shut
    gap = 0.17 * torch.sin(math.pi * b.t / period).abs() ** 0.8
    hand = _hand_frame(torch.tensor([0.0, 0.45, 1.0], dtype=_DT).expand(b.F, 3),
                       torch.tensor([-1.0, 0.0, 0.0], dtype=_DT).expand(b.F, 3))
    for side, sign in (("left", 1.0), ("right", -1.0)):
        wrist = torch.stack([sign * (0.03 + gap / 2), torch.full_like(gap, float(chest[1])),
                             torch.full_like(gap, float(chest[2]) + 0.33)], dim=-1)
        wrist = wrist + (b.pelvis - rig.j("pelvis"))
        b.hand(side, wrist, torch.tensor([sign * 0.6, -1.0, -0.2], dtype=_DT), _side(hand, side))
    b.hands_relaxed(6)


def _raise_arms(b: Builder) -> None:
    """Both arms up overhead through the sides, palms turning forward, and down again."""
    stand(b)
    u = b.keys([0.0, 0.3, 1.2, 1.8, 2.7, 3.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    direction = arm_direction(9 + 156 * u, 0.0) + torch.stack([0 * u, 0 * u, 0.12 * u], dim=-1)
    for side in ("left", "right"):
        b.set(f"{side}_shoulder", _side(arm_rotation(direction, -70 * u), side))
        b.set(f"{side}_elbow", _side(qy(-(12 - 7 * u)), side))
    b.set("neck", qx(-8 * u))
    b.set("head", qx(-6 * u))
    b.spread(("spine2", "spine3"), qx(-5 * u))
    breathe(b, 1.5, 1.0)
    b.hands_relaxed(8)


def _ball_from_ankle(b: Builder, side: str, ankle: torch.Tensor, pitch: torch.Tensor) -> torch.Tensor:
    """Where the ball of the foot is when the ankle is at ``ankle`` and the foot is pitched."""
    rest = b.rig.j(f"{side}_foot") - b.rig.j(f"{side}_ankle")
    return ankle + (quaternion_to_matrix(qx(pitch)) @ rest[:, None])[..., 0]


def _kick(b: Builder) -> None:
    """A right front kick from a guard: shift onto the left foot, chamber, snap out, set down."""
    rig = b.rig
    footwork(b, "left", [])
    shift = b.keys([0.0, 0.35, 0.8, 1.9, 2.4, 3.0], [0.0, 0.0, 1.0, 1.0, 0.0, 0.0])
    _pelvis_offset(b, dx=0.075 * shift, dy=-0.02 * shift)
    # chamber the knee, snap the foot out, pull it back, set it down
    times = [0.0, 0.8, 1.08, 1.28, 1.5, 1.9, 3.0]
    up = b.keys(times, [0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    out = b.keys(times, [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0])
    L1, L2 = rig.bone("right_hip", "right_knee"), rig.bone("right_knee", "right_ankle")
    hip = rig.j("right_hip") + (b.pelvis - rig.j("pelvis"))
    rest_ankle = rig.j("right_ankle").expand(b.F, 3)
    chamber = hip + torch.tensor([0.0, -0.95 * L2, 0.9 * L1], dtype=_DT)
    down = math.radians(25)  # the extended leg points 25 degrees below horizontal
    extended = hip + (L1 + L2) * 0.97 * torch.tensor([0.0, -math.sin(down), math.cos(down)], dtype=_DT)
    ankle = rest_ankle + (chamber - rest_ankle) * up[:, None] + (extended - chamber) * out[:, None]
    pitch = -25 * up - 45 * out
    ball = _ball_from_ankle(b, "right", ankle, pitch)
    ball[:, 1] = torch.maximum(ball[:, 1], rig.j("right_foot")[1].expand(b.F))
    b.foot("right", ball, pitch=pitch, toes_flat=1 - up, contact=up < 1e-3)
    b.root = quat_mul(qy(-8 * shift), qx(-10 * out - 3 * up))
    b.spread(("spine1", "spine2"), qz(-4 * shift))
    arms_hanging(b, abduction=9 + 16 * shift, flexion=35 * shift, elbow=15 + 95 * shift)
    b.set("neck", qx(6 * up))
    b.hands_relaxed(40)


def _step_touch(b: Builder) -> None:
    """Dance: step right, touch, step left, touch, bouncing on the beat (120 bpm)."""
    beat = 0.5
    rig = b.rig
    lx, lz = float(rig.j("left_foot")[0]), float(rig.j("left_foot")[2])
    rx, rz = float(rig.j("right_foot")[0]), float(rig.j("right_foot")[2])
    s = 0.24
    left, right = [], []
    for k in range(2):  # two bars of four beats
        t = 4 * beat * k
        right.append(Step(t + 0.04, t + 0.36, (rx - s, rz), lift=0.06, heel=12, roll=0.08))
        left.append(Step(t + beat + 0.04, t + beat + 0.36, (lx - s, lz), lift=0.05, heel=12, roll=0.08))
        left.append(Step(t + 2 * beat + 0.04, t + 2 * beat + 0.36, (lx, lz), lift=0.06, heel=12, roll=0.08))
        right.append(Step(t + 3 * beat + 0.04, t + 3 * beat + 0.36, (rx, rz), lift=0.05, heel=12, roll=0.08))
    footwork(b, "left", left)
    footwork(b, "right", right)
    sway = b.keys([0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75], [0.0, -0.5, -0.85, -1.0, -1.0, -0.5, -0.15, 0.0], period=2.0)
    bounce = (1 + torch.cos(2 * math.pi * b.t / beat)) / 2
    _pelvis_offset(b, dx=s * 0.9 * sway, dy=-0.025 - 0.03 * bounce)
    side_to_side = torch.sin(2 * math.pi * b.t / (4 * beat) - math.pi / 2)
    b.root = qz(3 * side_to_side)
    b.spread(("spine1", "spine2", "spine3"), quat_mul(qy(-12 * side_to_side), qz(-4 * side_to_side)))
    b.set("neck", qx(4 * bounce))
    b.set("head", qz(-5 * side_to_side))
    # elbows bent at the waist, forearms swinging across with the step
    for side, sign in (("left", 1.0), ("right", -1.0)):
        sh = arm_rotation(arm_direction(14.0, 12 + 6 * bounce), -sign * 28 * side_to_side)
        b.set(f"{side}_shoulder", _side(sh, side))
        b.set(f"{side}_elbow", _side(qy(-80.0), side))
    b.hands_relaxed(40)


def _disco(b: Builder) -> None:
    """Dance: the right arm points up and down across on the beat, left hand on the hip."""
    beat = 0.5
    stand(b)
    rig = b.rig
    hit = torch.cos(math.pi * b.t / beat)  # +1 on even beats (point up), -1 on odd beats (point down)
    bounce = (1 + torch.cos(2 * math.pi * b.t / beat)) / 2
    _pelvis_offset(b, dx=0.035 * hit, dy=-0.02 - 0.025 * bounce)
    b.root = quat_mul(qz(-5 * hit), qy(6 * hit))
    b.spread(("spine1", "spine2", "spine3"), quat_mul(qz(7 * hit), qy(-8 * hit)))
    b.set("neck", quat_mul(qy(-14 * hit), qx(-6 * hit)))
    up = (1 + hit) / 2
    # the right arm points up-right and down across to the left hip, on alternate beats
    point_up = arm_rotation(torch.tensor([0.55, 0.8, 0.2], dtype=_DT))
    point_down = arm_rotation(torch.tensor([-0.45, -0.85, 0.35], dtype=_DT), -20.0)
    b.set("right_shoulder", mirror_quat(b.rot_keys([0.0, beat], [point_up, point_down], period=2 * beat)))
    b.set("right_elbow", mirror_quat(qy(-8.0)))
    b.turn("right_collar", mirror_quat(qz(8 * up)))
    # left hand on the hip, elbow out
    hip = rig.j("left_hip") + (b.pelvis - rig.j("pelvis"))
    wrist = hip + torch.tensor([0.09, 0.1, -0.03], dtype=_DT)
    b.hand("left", wrist, torch.tensor([1.0, 0.2, -0.4], dtype=_DT),
           _hand_frame(torch.tensor([0.0, -1.0, 0.6], dtype=_DT).expand(b.F, 3),
                       torch.tensor([-1.0, 0.0, 0.0], dtype=_DT).expand(b.F, 3)))
    b.hands_relaxed(50)
    for k in (1, 2, 3):  # the pointing index finger
        b.set(f"right_index{k}", mirror_quat(qz(-2.0)))


def _turn(b: Builder) -> None:
    """Turning once around to the left in small steps, the head and chest leading."""
    t_start, t_end = 0.4, 3.6
    yaw = 360 * smoothstep((b.t - t_start) / (t_end - t_start))
    rig = b.rig
    pelvis = rig.j("pelvis")
    n = 12
    steps = {"left": [], "right": []}
    for k in range(n):
        t0 = t_start + 0.05 + k * (t_end - t_start) / n
        t1 = t0 + 0.24
        side = "left" if k % 2 == 0 else "right"
        heading = 360 * float(smoothstep(torch.tensor((t1 + 0.12 - t_start) / (t_end - t_start))))
        if k >= n - 2:
            heading = 360.0
        rest = rig.j(f"{side}_foot") - pelvis
        c, s_ = math.cos(math.radians(heading)), math.sin(math.radians(heading))
        x = float(pelvis[0] + rest[0] * c + rest[2] * s_)
        z = float(pelvis[2] - rest[0] * s_ + rest[2] * c)
        steps[side].append(Step(t0, t1, (x, z), yaw=heading, lift=0.07, heel=15, roll=0.1))
    for side in ("left", "right"):
        footwork(b, side, steps[side])
    speed = torch.gradient(yaw, spacing=(b.t,))[0]  # deg/s
    b.root = qy(yaw)
    _pelvis_offset(b, dy=-0.02 * smoothstep(speed.abs() / 120))
    b.spread(("spine1", "spine2", "spine3"), qy(0.06 * speed))
    b.set("neck", qy(0.06 * speed))
    arms_hanging(b, abduction=12 + 0.03 * speed.abs(), elbow=20.0)
    b.hands_relaxed(20)


PRESETS: dict[str, _Preset] = {
    "idle": _Preset("Idle", 4.0, True, _idle),
    "wave": _Preset("Wave", 3.5, True, _wave),
    "walk_in_place": _Preset("Walk in place", 4.0, True, _walk_in_place),
    "walk": _Preset("Walk", 4.4, True, _walk),
    "run": _Preset("Run", 2.88, True, _run),
    "jump": _Preset("Jump", 3.0, True, _jump),
    "squat": _Preset("Squat", 4.0, True, _squat),
    "dance_step_touch": _Preset("Dance: step touch", 4.0, True, _step_touch),
    "dance_disco": _Preset("Dance: disco", 4.0, True, _disco),
    "turn": _Preset("Turn around", 4.0, True, _turn),
    "bow": _Preset("Bow", 3.0, True, _bow),
    "clap": _Preset("Clap", 3.2, True, _clap),
    "raise_arms": _Preset("Raise arms", 3.0, True, _raise_arms),
    "kick": _Preset("Kick", 3.0, True, _kick),
}


# ---------------------------------------------------------------------------------------------
# access


def preset(name: str, body=None) -> Motion:
    """The preset motion ``name`` solved on ``body`` (a Body or Avatar; default the free body)."""
    if name not in PRESETS:
        raise KeyError(f"unknown motion preset '{name}'; choose one of {', '.join(PRESETS)}")
    motion = _default_preset(name) if body is None else _solve(name, Rig.for_body(body))
    # fresh tensors: callers may edit them in place without touching the cache
    return motion.replace(**{k: v.clone() for k, v in vars(motion).items() if torch.is_tensor(v)})


@lru_cache(maxsize=None)
def _default_preset(name: str) -> Motion:
    return _solve(name, _default_rig())


@lru_cache(maxsize=1)
def _default_rig() -> Rig:
    return Rig.for_body(None)


def _solve(name: str, rig: Rig) -> Motion:
    p = PRESETS[name]
    b = Builder(rig, p.duration, FPS, loops=p.loops)
    p.make(b)
    return b.build(name)


def list_motions() -> list[PresetInfo]:
    """The presets: name, display name, duration (s), whether they loop, preview image (if built)."""
    out = []
    for name, p in PRESETS.items():
        preview = next((f for f in (PREVIEW_DIR / f"{name}.webp", PREVIEW_DIR / f"{name}.gif") if f.is_file()), None)
        out.append(PresetInfo(name, p.display_name, p.duration, p.loops, preview))
    return out
