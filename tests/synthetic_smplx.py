"""A synthetic SMPL-X-format model file for tests: the official key layout, 10475 vertices, no licensed data.

The geometry is a tube figure around an SMPL-X-like skeleton written here by hand (approximate
anatomical joint positions, T-pose, y-up, facing +z, left side at +x).
"""
from __future__ import annotations

import numpy as np

from lhm.body import skeleton

NUM_VERTICES = 10475
NUM_FACES = 20908

_HALF = {  # left-side and midline joints; the right side mirrors x
    "pelvis": (0.0, -0.35, 0.01), "left_hip": (0.06, -0.44, 0.0), "spine1": (0.0, -0.24, -0.01),
    "left_knee": (0.11, -0.82, 0.0), "spine2": (0.0, -0.11, 0.01), "left_ankle": (0.09, -1.22, -0.04),
    "spine3": (0.0, -0.05, 0.03), "left_foot": (0.12, -1.28, 0.08), "neck": (0.0, 0.16, -0.01),
    "left_collar": (0.07, 0.07, 0.0), "head": (0.0, 0.25, 0.04), "left_shoulder": (0.17, 0.11, -0.02),
    "left_elbow": (0.43, 0.08, -0.04), "left_wrist": (0.68, 0.08, -0.04), "jaw": (0.0, 0.22, 0.05),
    "left_eye": (0.03, 0.31, 0.11),
    "left_index1": (0.77, 0.07, 0.02), "left_index2": (0.80, 0.07, 0.02), "left_index3": (0.82, 0.07, 0.02),
    "left_middle1": (0.78, 0.07, -0.005), "left_middle2": (0.81, 0.07, -0.005), "left_middle3": (0.84, 0.07, -0.005),
    "left_pinky1": (0.75, 0.07, -0.05), "left_pinky2": (0.77, 0.07, -0.05), "left_pinky3": (0.79, 0.07, -0.05),
    "left_ring1": (0.77, 0.07, -0.03), "left_ring2": (0.80, 0.07, -0.03), "left_ring3": (0.82, 0.07, -0.03),
    "left_thumb1": (0.71, 0.06, 0.03), "left_thumb2": (0.73, 0.05, 0.05), "left_thumb3": (0.75, 0.05, 0.07),
}


def template_joints() -> np.ndarray:
    """The 55 hand-written joints [55,3] in SMPL-X order."""
    out = []
    for name in skeleton.JOINT_NAMES:
        if name in _HALF:
            out.append(_HALF[name])
        else:
            x, y, z = _HALF["left_" + name[len("right_"):]]
            out.append((-x, y, z))
    return np.asarray(out, dtype=np.float64)


def _tube(a: np.ndarray, b: np.ndarray, radius: float, rings: int, segs: int):
    axis = b - a
    length = np.linalg.norm(axis)
    d = axis / max(length, 1e-9)
    helper = np.array([0.0, 0.0, 1.0]) if abs(d[2]) < 0.9 else np.array([1.0, 0.0, 0.0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    w = np.cross(d, u)
    t = np.linspace(0.0, 1.0, rings)
    ang = np.linspace(0.0, 2 * np.pi, segs, endpoint=False)
    pts = a + t[:, None, None] * axis + radius * (np.cos(ang)[None, :, None] * u + np.sin(ang)[None, :, None] * w)
    faces = []
    for r in range(rings - 1):
        for s in range(segs):
            i0, i1 = r * segs + s, r * segs + (s + 1) % segs
            j0, j1 = i0 + segs, i1 + segs
            faces += [(i0, j0, i1), (i1, j0, j1)]
    return pts.reshape(-1, 3), np.asarray(faces), t


def make_smplx_arrays(num_shape: int = 400, seed: int = 0) -> dict[str, np.ndarray]:
    """Arrays with the key layout of the official ``SMPLX_NEUTRAL.npz``."""
    rng = np.random.default_rng(seed)
    J = template_joints()
    parents = np.asarray(skeleton.PARENTS)
    verts, faces, weights = [], [], []
    for k in range(1, 55):
        p = parents[k]
        radius = 0.012 if k >= 25 else (0.09 if p in (0, 3, 6, 9) else 0.05)
        if p == skeleton.JOINT_INDEX["head"] or k in (skeleton.JOINT_INDEX["jaw"],):
            radius = 0.03
        pts, f, t = _tube(J[p], J[k], radius, rings=10, segs=12)
        w = np.zeros((len(pts), 55))
        # the segment from p to k follows p; blend towards k near the child end
        tt = np.repeat(t, 12)
        w[:, p] = 1.0 - 0.3 * tt
        w[:, k] += 0.3 * tt
        faces.append(f + sum(len(v) for v in verts))
        verts.append(pts)
        weights.append(w)
    v = np.concatenate(verts)
    w = np.concatenate(weights)
    f = np.concatenate(faces)
    # one vertex exactly at each joint lets the regressor be exact; the rest pads to SMPL-X's count
    pad = NUM_VERTICES - len(v)
    assert pad >= 55, pad
    fill = J[skeleton.JOINT_INDEX["pelvis"]] + rng.normal(scale=0.02, size=(pad - 55, 3))
    v = np.concatenate([v, J, fill])
    wj = np.eye(55)
    wf = np.zeros((pad - 55, 55))
    wf[:, 0] = 1.0
    w = np.concatenate([w, wj, wf])
    start = NUM_VERTICES - pad
    J_regressor = np.zeros((55, NUM_VERTICES))
    J_regressor[np.arange(55), start + np.arange(55)] = 1.0
    # extra faces among the padding vertices bring the face count to SMPL-X's
    extra = NUM_FACES - len(f)
    assert extra >= 0, len(f)
    idx = start + 55 + rng.integers(0, pad - 55, size=(extra, 3))
    f = np.concatenate([f, idx])
    shapedirs = rng.normal(scale=1e-3, size=(NUM_VERTICES, 3, num_shape))
    shapedirs[:, :, 0] = 0.05 * v  # beta 0 scales the whole body
    shapedirs[:, 1, 1] = 0.05 * v[:, 1]  # beta 1 stretches height
    return {
        "v_template": v.astype(np.float64),
        "f": f.astype(np.uint32),
        "shapedirs": shapedirs,
        "posedirs": np.zeros((NUM_VERTICES, 3, 486)),
        "J_regressor": J_regressor,
        "weights": w,
        "kintree_table": np.stack([np.r_[2**32 - 1, parents[1:]], np.arange(55)]).astype(np.int64),
        "hands_componentsl": np.eye(45), "hands_componentsr": np.eye(45),
        "hands_meanl": rng.normal(scale=0.1, size=45), "hands_meanr": rng.normal(scale=0.1, size=45),
        "hands_coeffsl": np.zeros((10, 45)), "hands_coeffsr": np.zeros((10, 45)),
        "lmk_faces_idx": np.arange(51, dtype=np.int64), "lmk_bary_coords": np.full((51, 3), 1 / 3),
        "dynamic_lmk_faces_idx": np.zeros((79, 17), dtype=np.int64),
        "dynamic_lmk_bary_coords": np.full((79, 17, 3), 1 / 3),
        "vt": np.zeros((NUM_VERTICES, 2)), "ft": f.astype(np.uint32),
    }


def write_smplx_folder(folder, **kwargs):
    """Write ``SMPLX_NEUTRAL.npz`` into ``folder/smplx`` (the layout of LHM's human_model_files)."""
    import pathlib

    target = pathlib.Path(folder) / "smplx"
    target.mkdir(parents=True, exist_ok=True)
    np.savez(target / "SMPLX_NEUTRAL.npz", **make_smplx_arrays(**kwargs))
    return target / "SMPLX_NEUTRAL.npz"
