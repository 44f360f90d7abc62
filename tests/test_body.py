"""Skeleton, SMPL-X loading and posing (checked against the smplx package), the free body."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import lhm
from lhm.body import SMPLXFilesError, skeleton
from lhm.body.free import ASSET

import synthetic_smplx


def test_skeleton_matches_smplx_package():
    from smplx.joint_names import JOINT_NAMES

    theirs = [n.replace("_smplhf", "") for n in JOINT_NAMES[:55]]
    assert list(skeleton.JOINT_NAMES) == theirs
    assert skeleton.PARENTS[0] == -1
    assert all(0 <= p < i for i, p in enumerate(skeleton.PARENTS) if i)
    mirror = skeleton.mirror_index()
    assert all(mirror[mirror[i]] == i for i in range(55))
    assert skeleton.JOINT_NAMES[mirror[skeleton.JOINT_INDEX["left_thumb2"]]] == "right_thumb2"


def test_smplx_body_poses_like_the_smplx_package(smplx_dir, smplx_body):
    import smplx

    layer = smplx.SMPLX(str(smplx_dir / "smplx" / "SMPLX_NEUTRAL.npz"), ext="npz", num_betas=10,
                        num_expression_coeffs=10, use_pca=False, flat_hand_mean=True, batch_size=3)
    torch.manual_seed(0)
    pose = torch.randn(3, 55, 3) * 0.4
    betas = torch.randn(3, 10)
    transl = torch.randn(3, 3) * 0.2
    ref = layer(global_orient=pose[:, 0], body_pose=pose[:, 1:22].reshape(3, -1), jaw_pose=pose[:, 22],
                leye_pose=pose[:, 23], reye_pose=pose[:, 24], left_hand_pose=pose[:, 25:40].reshape(3, -1),
                right_hand_pose=pose[:, 40:55].reshape(3, -1), betas=betas, transl=transl,
                expression=torch.zeros(3, 10))
    ours = smplx_body.pose(pose, betas, transl)
    assert ours.vertices.shape == (3, 10475, 3)
    assert torch.allclose(ours.vertices, ref.vertices, atol=2e-5)
    assert torch.allclose(ours.joints, ref.joints[:, :55], atol=2e-5)


def test_smplx_missing_folder_names_the_files(tmp_path):
    with pytest.raises(SMPLXFilesError) as e:
        lhm.load_body("smplx", tmp_path)
    msg = str(e.value)
    assert "SMPLX_NEUTRAL.npz" in msg and "smpl-x.is.tue.mpg.de" in msg and str(tmp_path) in msg


def test_smplx_wrong_files_are_clear_errors(tmp_path):
    (tmp_path / "SMPLX_NEUTRAL.npz").write_bytes(b"this is not a model")
    with pytest.raises(SMPLXFilesError, match="not a readable SMPL-X model file"):
        lhm.load_body("smplx", tmp_path)
    arrays = synthetic_smplx.make_smplx_arrays(num_shape=20)
    arrays["v_template"] = arrays["v_template"][:6890]  # an SMPL-sized template
    arrays["weights"] = arrays["weights"][:6890]
    arrays["shapedirs"] = arrays["shapedirs"][:6890]
    arrays["posedirs"] = arrays["posedirs"][:6890]
    arrays["J_regressor"] = arrays["J_regressor"][:, :6890]
    arrays["f"] = arrays["f"][(arrays["f"] < 6890).all(axis=1)]
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", **arrays)
    with pytest.raises(SMPLXFilesError, match="6890 vertices"):
        lhm.load_body("smplx", tmp_path)


def test_unknown_body_kind():
    with pytest.raises(ValueError, match="'free' or 'smplx'"):
        lhm.load_body("smpl")


def _assert_anatomy(joints: torch.Tensor) -> None:
    """Invariants of an SMPL-X T-pose skeleton that catch mis-ordered or mirrored joints."""
    j = {n: joints[i] for i, n in enumerate(skeleton.JOINT_NAMES)}
    for side, sign in (("left", 1), ("right", -1)):
        for part in ("hip", "knee", "ankle", "collar", "shoulder", "elbow", "wrist", "eye"):
            assert sign * j[f"{side}_{part}"][0] > 0, f"{side}_{part} on the wrong side"
        assert j[f"{side}_hip"][1] > j[f"{side}_knee"][1] > j[f"{side}_ankle"][1]
        assert j[f"{side}_foot"][2] > j[f"{side}_ankle"][2], "feet point forward (+z)"
        out = [sign * j[f"{side}_{p}"][0] for p in ("collar", "shoulder", "elbow", "wrist", "middle1", "middle2", "middle3")]
        assert all(a < b for a, b in zip(out, out[1:])), f"{side} arm chain not outward"
        # palms down, facing +z: index in front, then middle, ring, pinky
        zs = [j[f"{side}_{f}1"][2] for f in ("index", "middle", "ring", "pinky")]
        assert all(a > b for a, b in zip(zs, zs[1:])), f"{side} fingers out of order"
        assert j[f"{side}_thumb1"][2] > j[f"{side}_middle1"][2] and j[f"{side}_thumb3"][2] > j[f"{side}_index1"][2]
        assert abs(float(j[f"{side}_wrist"][1] - j[f"{side}_shoulder"][1])) < 0.1, "arms horizontal (T-pose)"
    ys = [j[n][1] for n in ("pelvis", "spine1", "spine2", "spine3", "neck", "head")]
    assert all(a < b for a, b in zip(ys, ys[1:]))
    assert j["left_eye"][1] > j["jaw"][1] and j["left_eye"][2] > j["head"][2]


def test_both_bodies_share_the_skeleton(free_body, smplx_body):
    for body in (free_body, smplx_body):
        _assert_anatomy(body.joints)
        assert torch.equal(body.parents, torch.tensor(skeleton.PARENTS))
        assert torch.allclose(body.weights.sum(1), torch.ones(len(body.vertices)), atol=1e-5)
        assert body.head_mask.any() and body.left_hand_mask.any() and body.right_hand_mask.any()


def test_free_body_asset(free_body):
    assert ASSET.stat().st_size <= 10 * 2**20
    v = free_body.vertices
    height = float(v[:, 1].max() - v[:, 1].min())
    assert 1.6 < height < 1.8
    assert abs(float(free_body.joints[0, 1]) + 0.35) < 0.08, "pelvis where SMPL-X has it"
    assert (free_body.weights >= 0).all()
    # closed, outward-facing mesh: positive signed volume
    a, b, c = (v[free_body.faces[:, i]].double() for i in range(3))
    assert float((a * torch.linalg.cross(b, c)).sum() / 6) > 0.03
    # the head region is the top of the body, the hands are at the ends of the arms
    assert float(v[free_body.head_mask, 1].min()) > float(free_body.joints[skeleton.JOINT_INDEX["neck"], 1]) - 0.05
    assert float(v[free_body.left_hand_mask, 0].min()) > float(free_body.joints[skeleton.JOINT_INDEX["left_elbow"], 0])
    meta = lhm.body.free.free_body_meta()
    assert "CC0" in json.dumps(meta)


def test_free_body_needs_neither_anny_nor_warp():
    code = "import sys, lhm; lhm.load_body('free'); print(sorted(m for m in ('anny', 'warp', 'smplx') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_free_body_poses_plausibly(free_body):
    pose = torch.zeros(1, 55, 3)
    pose[0, skeleton.JOINT_INDEX["left_knee"], 0] = 1.5  # bend the left knee
    posed = free_body.pose(pose).vertices[0]
    moved = (posed - free_body.vertices).norm(dim=1) > 1e-6
    left_leg = free_body.weights[:, [skeleton.JOINT_INDEX[n] for n in ("left_knee", "left_ankle", "left_foot")]].sum(1) > 0
    assert torch.equal(moved, left_leg)
    ankle = skeleton.JOINT_INDEX["left_ankle"]
    assert float(free_body.pose(pose).joints[0, ankle, 2]) < float(free_body.joints[ankle, 2]) - 0.2, "shin swings back"
