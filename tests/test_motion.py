"""Motions: file formats and conversions, safety of uploads, timing edits, presets, cameras."""
from __future__ import annotations

import json
import math
import zipfile
from dataclasses import replace

import numpy as np
import pytest
import torch

import lhm
from lhm.body import skeleton
from lhm.geometry import axis_angle_to_matrix
from lhm.motion import (MAX_FRAMES, REST_PELVIS, MotionError, limit_violations, list_motions, load_motion,
                        motion_camera, posed_points, save_motion)
from lhm.motion.formats import OPENCV_TO_WORLD, ZUP_TO_WORLD
from lhm.motion.presets import PRESETS

J = skeleton.JOINT_INDEX


def _random_motion(F=6, seed=0, **kwargs) -> lhm.Motion:
    gen = torch.Generator().manual_seed(seed)
    pose = torch.randn(F, 55, 3, generator=gen) * 0.3
    return lhm.Motion.from_full_pose(pose, torch.randn(F, 3, generator=gen) * 0.5, **kwargs)


def _same_rotations(a: torch.Tensor, b: torch.Tensor, atol=1e-5) -> bool:
    return torch.allclose(axis_angle_to_matrix(a), axis_angle_to_matrix(b), atol=atol)


def _assert_same_motion(a: lhm.Motion, b: lhm.Motion, atol=1e-5) -> None:
    assert len(a) == len(b)
    assert _same_rotations(a.full_pose(), b.full_pose(), atol)
    assert torch.allclose(a.trans, b.trans, atol=atol)


def _lhm_frame(f: int, gen: np.random.Generator) -> dict:
    return {
        "root_pose": [math.pi + 0.1 * f, 0.05, -0.02], "body_pose": (gen.normal(size=(21, 3)) * 0.2).tolist(),
        "jaw_pose": [0.1, 0.0, 0.0], "leye_pose": [0.0] * 3, "reye_pose": [0.0] * 3,
        "lhand_pose": (gen.normal(size=(15, 3)) * 0.1).tolist(), "rhand_pose": (gen.normal(size=(15, 3)) * 0.1).tolist(),
        "trans": [0.1 * f, 0.3, 4.0], "expr": [0.0] * 100, "betas": [0.5] + [0.0] * 9,
        "focal": [1200.0, 1200.0], "princpt": [640.0, 480.0], "img_size_wh": [1280, 960], "pad_ratio": 0.2,
    }


def _write_lhm_folder(root, frames: int = 4):
    gen = np.random.default_rng(0)
    params = root / "smplx_params"
    params.mkdir(parents=True)
    for f in range(frames):
        (params / f"{f + 1:05d}.json").write_text(json.dumps(_lhm_frame(f, gen)))
    return root


# ---------------------------------------------------------------------------------------------
# formats


def test_lhm_folder_is_converted_and_keeps_its_camera(tmp_path):
    folder = _write_lhm_folder(tmp_path / "dance")
    m = load_motion(folder)
    assert len(m) == 4 and m.name == "dance" and m.fps == 30.0
    raw = json.loads((folder / "smplx_params" / "00002.json").read_text())
    # the body upright in the camera frame (root ~ pi about x) is upright in ours
    R = axis_angle_to_matrix(torch.tensor(raw["root_pose"]))
    assert torch.allclose(axis_angle_to_matrix(m.root_pose[1]), OPENCV_TO_WORLD @ R, atol=1e-5)
    assert m.camera is not None and (m.camera.width, m.camera.height) == (1280, 960)
    assert torch.allclose(m.camera.K, torch.tensor([[1200.0, 0, 640], [0, 1200, 480], [0, 0, 1]]))
    # the camera sits at the origin looking down -z of our world (its +z in OpenCV)
    assert torch.allclose(m.camera.center, torch.zeros(3), atol=1e-6)
    assert torch.allclose(m.camera.viewmat[:3, :3], OPENCV_TO_WORLD)
    assert m.betas is not None and float(m.betas[0]) == 0.5 and m.expr.shape == (4, 100)
    # also from the smplx_params folder itself, and from a single frame
    assert len(load_motion(folder / "smplx_params")) == 4
    assert len(load_motion(folder / "smplx_params" / "00001.json")) == 1


def test_lhm_camera_gives_the_official_framing(tmp_path, smplx_body):
    """Projecting the converted body through the converted camera gives the pixels LHM gets."""
    folder = _write_lhm_folder(tmp_path / "m", frames=2)
    raw = json.loads((folder / "smplx_params" / "00001.json").read_text())
    pose = torch.cat([torch.tensor(raw[k], dtype=torch.float32).reshape(-1, 3) for k in
                      ("root_pose", "body_pose", "jaw_pose", "leye_pose", "reye_pose", "lhand_pose", "rhand_pose")])
    body = _body_with_pelvis(smplx_body, REST_PELVIS)
    official = body.pose(pose[None], transl=torch.tensor([raw["trans"]]))
    K = torch.tensor([[1200.0, 0, 640], [0, 1200, 480], [0, 0, 1]])
    uv_official = official.vertices[0] @ K.T
    uv_official = uv_official[:, :2] / uv_official[:, 2:]
    m = load_motion(folder)
    ours = body.pose(m.full_pose()[:1], transl=m.trans[:1]).vertices[0]
    assert torch.allclose(m.camera.project(ours), uv_official, atol=0.05)


def _body_with_pelvis(body: lhm.Body, pelvis) -> lhm.Body:
    shift = torch.tensor(pelvis) - body.joints[0]
    return replace(body, vertices=body.vertices + shift, joints=body.joints + shift)


@pytest.mark.parametrize("R", [OPENCV_TO_WORLD, ZUP_TO_WORLD])
def test_world_rotation_rotates_the_posed_body(smplx_body, R):
    body = _body_with_pelvis(smplx_body, REST_PELVIS)
    m = _random_motion()
    rotated = m.transform(R)
    before = body.pose(m.full_pose(), transl=m.trans).vertices
    after = body.pose(rotated.full_pose(), transl=rotated.trans).vertices
    assert torch.allclose(after, before @ R.T, atol=1e-4)
    # another body: off by |R - I| times its rest pelvis's distance from the constant (millimetres)
    other_before = smplx_body.pose(m.full_pose(), transl=m.trans).vertices
    other_after = smplx_body.pose(rotated.full_pose(), transl=rotated.trans).vertices
    error = float((other_after - other_before @ R.T).norm(dim=-1).max())
    offset = float((smplx_body.joints[0] - torch.tensor(REST_PELVIS)).norm())
    assert 1e-4 < error <= 2 * offset + 1e-5


def test_lhm_folder_round_trip(tmp_path):
    m = load_motion(_write_lhm_folder(tmp_path / "src"))
    out = save_motion(m, tmp_path / "copy")
    assert (out / "smplx_params" / "00004.json").is_file()
    back = load_motion(out)
    _assert_same_motion(m, back)
    assert torch.allclose(back.camera.K, m.camera.K) and torch.allclose(back.camera.viewmat, m.camera.viewmat, atol=1e-6)
    assert (back.camera.width, back.camera.height) == (1280, 960)
    assert torch.allclose(back.expr, m.expr) and torch.allclose(back.betas, m.betas)
    # the written files carry LHM's fields, in the camera frame
    raw = json.loads((out / "smplx_params" / "00001.json").read_text())
    src = json.loads((tmp_path / "src" / "smplx_params" / "00001.json").read_text())
    assert np.allclose(raw["trans"], src["trans"], atol=1e-5) and raw["img_size_wh"] == [1280, 960]
    assert _same_rotations(torch.tensor(raw["root_pose"]), torch.tensor(src["root_pose"]))


def test_lhm_zip_round_trip(tmp_path):
    m = load_motion(_write_lhm_folder(tmp_path / "src"))
    z = save_motion(m, tmp_path / "m.zip")
    back = load_motion(z)
    _assert_same_motion(m, back)
    assert back.name == "m"


def test_preset_saved_as_lhm_keeps_what_its_camera_sees(tmp_path, smplx_body):
    """LHM files live in their camera's frame: a preset goes there through its default camera."""
    body = _body_with_pelvis(smplx_body, REST_PELVIS)
    m = load_motion("wave").trim(0, 12)
    back = load_motion(save_motion(m, tmp_path / "wave", body=body))
    assert torch.allclose(back.body_pose, m.body_pose, atol=1e-6)

    def seen(motion, cam):
        return cam.world_to_camera(body.pose(motion.full_pose(), transl=motion.trans).vertices)

    assert torch.allclose(seen(back, back.camera), seen(m, motion_camera(m, body)), atol=1e-4)


def test_amass_npz(tmp_path):
    gen = np.random.default_rng(1)
    F = 5
    poses = gen.normal(size=(F, 156)) * 0.2
    trans = gen.normal(size=(F, 3))
    np.savez(tmp_path / "a.npz", poses=poses, trans=trans, mocap_framerate=np.array(120.0), betas=np.zeros(16),
             gender=np.array("male"))
    m = load_motion(tmp_path / "a.npz")
    assert len(m) == F and m.fps == 120.0
    # SMPL-H: body as is, hands from joints 22..51, no jaw or eyes
    p = torch.tensor(poses, dtype=torch.float32).reshape(F, 52, 3)
    assert torch.allclose(m.body_pose, p[:, 1:22], atol=1e-6)
    assert torch.allclose(m.lhand_pose, p[:, 22:37]) and torch.allclose(m.rhand_pose, p[:, 37:52])
    assert float(m.jaw_pose.abs().max()) == 0.0
    # z-up to y-up: the root turns with the world, the pelvis moves with it
    R0 = axis_angle_to_matrix(p[:, 0])
    assert torch.allclose(axis_angle_to_matrix(m.root_pose), ZUP_TO_WORLD @ R0, atol=1e-5)
    J0 = torch.tensor(REST_PELVIS)
    assert torch.allclose(m.trans + J0, (torch.tensor(trans, dtype=torch.float32) + J0) @ ZUP_TO_WORLD.T, atol=1e-5)
    # SMPL-X 165 with the other frame-rate key; and writing AMASS reads back the same
    np.savez(tmp_path / "x.npz", poses=gen.normal(size=(F, 165)) * 0.2, trans=trans, mocap_frame_rate=np.array(60.0))
    x = load_motion(tmp_path / "x.npz")
    assert x.fps == 60.0 and float(x.jaw_pose.abs().max()) > 0
    _assert_same_motion(x, load_motion(save_motion(x, tmp_path / "y.npz", format="amass")))


def test_our_npz_round_trips_everything(tmp_path):
    m = load_motion(_write_lhm_folder(tmp_path / "src"))
    m = m.replace(name="named", fps=24.0, contacts=torch.tensor([[True, False]] * 4), loops=True)
    back = load_motion(save_motion(m, tmp_path / "ours.npz"))
    _assert_same_motion(m, back, atol=0)
    assert (back.name, back.fps, back.loops) == ("named", 24.0, True)
    assert torch.equal(back.contacts, m.contacts) and torch.equal(back.expr, m.expr)
    assert torch.equal(back.camera.K, m.camera.K) and torch.equal(back.camera.viewmat, m.camera.viewmat)
    preset = load_motion("walk")
    again = load_motion(save_motion(preset, tmp_path / "walk.npz"))
    _assert_same_motion(preset, again, atol=0)
    assert again.camera is None and again.loops


# ---------------------------------------------------------------------------------------------
# bad input


def _frame_file(tmp_path, **changes):
    frame = _lhm_frame(0, np.random.default_rng(0))
    frame.update(changes)
    for key in [k for k, v in changes.items() if v is None]:
        del frame[key]
    path = tmp_path / "f.json"
    path.write_text(json.dumps(frame).replace('"__nan__"', "NaN"))
    return path


@pytest.mark.parametrize("changes, message", [
    ({"body_pose": None}, "missing body_pose"),
    ({"trans": None, "root_pose": None}, "missing root_pose, trans"),
    ({"body_pose": [[0.0, 0.0, 0.0]] * 20}, r"body_pose' has shape \[20, 3\], expected \[21, 3\]"),
    ({"trans": [0.0, "__nan__", 0.0]}, "NaN or Inf"),
    ({"focal": [0.0, 100.0]}, "must be positive"),
    ({"trans": "abc"}, "not an array of numbers"),
])
def test_bad_lhm_frames(tmp_path, changes, message):
    with pytest.raises(MotionError, match=message):
        load_motion(_frame_file(tmp_path, **changes))


def test_bad_files(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(MotionError, match="not valid JSON"):
        load_motion(tmp_path / "bad.json")
    np.savez(tmp_path / "other.npz", foo=np.zeros(3))
    with pytest.raises(MotionError, match="neither our motion .npz .* nor AMASS .*foo"):
        load_motion(tmp_path / "other.npz")
    np.savez(tmp_path / "odd.npz", poses=np.zeros((3, 100)), trans=np.zeros((3, 3)), mocap_framerate=30.0)
    with pytest.raises(MotionError, match="100 values per frame"):
        load_motion(tmp_path / "odd.npz")
    np.savez(tmp_path / "short.npz", poses=np.zeros((3, 165)), trans=np.zeros((2, 3)), mocap_framerate=30.0)
    with pytest.raises(MotionError, match=r"'trans' has shape \[2, 3\], expected \[3,3\]"):
        load_motion(tmp_path / "short.npz")
    np.savez(tmp_path / "nan.npz", poses=np.full((3, 165), np.nan), trans=np.zeros((3, 3)), mocap_framerate=30.0)
    with pytest.raises(MotionError, match="NaN or Inf"):
        load_motion(tmp_path / "nan.npz")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MotionError, match="holds no LHM motion"):
        load_motion(tmp_path / "empty")
    (tmp_path / "m.txt").write_text("x")
    with pytest.raises(MotionError, match="unknown motion file type"):
        load_motion(tmp_path / "m.txt")
    with pytest.raises(MotionError, match="neither a motion preset"):
        load_motion("moonwalk")
    assert issubclass(MotionError, ValueError)


def test_zip_path_escape_and_links_are_rejected(tmp_path):
    frame = json.dumps(_lhm_frame(0, np.random.default_rng(0)))
    for name in ("../evil.json", "/abs/evil.json", "smplx_params/../../evil.json"):
        path = tmp_path / "escape.zip"
        with zipfile.ZipFile(path, "w") as z:
            z.writestr(name, frame)
        with pytest.raises(MotionError, match="outside the archive"):
            load_motion(path)
    link = zipfile.ZipInfo("smplx_params/00001.json")
    link.external_attr = (0o120777 << 16)
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        z.writestr(link, "/etc/passwd")
    with pytest.raises(MotionError, match="symbolic link"):
        load_motion(tmp_path / "link.zip")
    assert not (tmp_path.parent / "evil.json").exists()


def test_zip_bomb_is_rejected(tmp_path):
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("smplx_params/00001.json", b" " * (3 * 2**20))
    with pytest.raises(MotionError, match="zip bomb"):
        load_motion(tmp_path / "bomb.zip")
    with zipfile.ZipFile(tmp_path / "many.zip", "w") as z:
        for i in range(10_001):
            z.writestr(f"d/{i}.txt", b"")
    with pytest.raises(MotionError, match="more than the limit"):
        load_motion(tmp_path / "many.zip")


def test_long_motions_are_capped(tmp_path):
    np.savez(tmp_path / "long.npz", poses=np.zeros((MAX_FRAMES + 10, 165)), trans=np.zeros((MAX_FRAMES + 10, 3)),
             mocap_framerate=30.0)
    with pytest.warns(UserWarning, match="keeping the first 3000"):
        m = load_motion(tmp_path / "long.npz")
    assert len(m) == MAX_FRAMES
    params = tmp_path / "lhm" / "smplx_params"
    params.mkdir(parents=True)
    text = json.dumps(_lhm_frame(0, np.random.default_rng(0)))
    for f in range(12):
        (params / f"{f:05d}.json").write_text(text)
    with pytest.warns(UserWarning, match="keeping the first 10"):
        assert len(load_motion(tmp_path / "lhm", max_frames=10)) == 10


# ---------------------------------------------------------------------------------------------
# timing


def test_resample():
    m = _random_motion(F=10)
    up = m.resample(60.0)
    assert len(up) == 19 and up.fps == 60.0
    _assert_same_motion(up.select(slice(0, None, 2)), m)
    # halfway frames lie on the slerp between their neighbours
    mid = up.full_pose()[1]
    R0, R1 = axis_angle_to_matrix(m.full_pose()[0]), axis_angle_to_matrix(m.full_pose()[1])
    Rm = axis_angle_to_matrix(mid)
    assert torch.allclose(R0.transpose(-1, -2) @ Rm, Rm.transpose(-1, -2) @ R1, atol=1e-5)
    assert torch.allclose(up.trans[1], (m.trans[0] + m.trans[1]) / 2)
    down = m.resample(15.0)
    assert len(down) == 5
    _assert_same_motion(down, m.select(slice(0, None, 2)))
    # a loop keeps whole periods and its stride
    walk = load_motion("walk")
    half = walk.resample(15.0)
    assert len(half) == len(walk) // 2 and half.loops
    _assert_same_motion(half, walk.select(slice(0, None, 2)), atol=1e-5)


def test_load_with_fps_keeps_the_camera(tmp_path):
    m = load_motion(_write_lhm_folder(tmp_path / "src"), fps=60.0)
    assert len(m) == 7 and m.fps == 60.0 and m.expr.shape == (7, 100)
    expected = torch.eye(4)
    expected[:3, :3] = OPENCV_TO_WORLD
    assert torch.allclose(m.camera.viewmat, expected)
    # a moving camera is blended like the body: halfway frames have the halfway centre
    V = m.camera.viewmat.expand(7, 4, 4).clone()
    V[:, 0, 3] = torch.arange(7.0)
    moving = m.replace(camera=lhm.Camera(m.camera.K, V, m.camera.width, m.camera.height), fps=30.0)
    assert torch.allclose(moving.resample(60.0).camera.center[1], (moving.camera.center[0] + moving.camera.center[1]) / 2,
                          atol=1e-5)


def test_trim_and_loop():
    m = _random_motion(F=10)
    t = m.trim(2, 5)
    _assert_same_motion(t, m.select([2, 3, 4]))
    assert len(m.trim(-3)) == 3
    with pytest.raises(ValueError, match="leaves no frame"):
        m.trim(5, 5)
    looped = m.loop(1.0, crossfade=0.1)  # 30 frames from 10 with 3 blended ones at each seam
    assert len(looped) == 30
    _assert_same_motion(looped.select(slice(0, 7)), m.select(slice(0, 7)))
    assert len(m.loop(0.2)) == 6
    idle = load_motion("idle")
    twice = idle.loop(2 * idle.duration)
    _assert_same_motion(twice.select(slice(len(idle), None)), idle, atol=1e-4)
    # a looping walk carries on walking: the second cycle is the first moved by one stride
    walk = load_motion("walk")
    w2 = walk.loop(2 * walk.duration)
    stride = w2.trans[len(walk)] - walk.trans[0]
    assert float(stride[2]) > 1.0 and abs(float(stride[1])) < 1e-6
    assert torch.allclose(w2.trans[len(walk):] - stride, walk.trans, atol=1e-5)


def test_mirror(free_body):
    m = _random_motion()
    _assert_same_motion(m.mirror().mirror(), m, atol=1e-6)
    raise_left = torch.zeros(1, 55, 3)
    raise_left[0, J["left_shoulder"], 2] = math.radians(70)
    m = lhm.Motion.from_full_pose(raise_left, contacts=torch.tensor([[True, False]]))
    mirrored = m.mirror()
    v = free_body.pose(mirrored.full_pose(), transl=mirrored.trans)
    rest = free_body.pose(torch.zeros(1, 55, 3))
    assert float(v.joints[0, J["right_wrist"], 1]) > float(rest.joints[0, J["right_wrist"], 1]) + 0.3
    # the other arm stays (the pelvis moves by twice REST_PELVIS x, millimetres on this body)
    assert torch.allclose(v.joints[0, J["left_wrist"]], rest.joints[0, J["left_wrist"]], atol=0.01)
    assert mirrored.contacts.tolist() == [[False, True]]
    # the mirrored body is the reflection of the original
    orig = free_body.pose(m.full_pose(), transl=m.trans).joints
    reflected = orig[:, list(skeleton.mirror_index())] * torch.tensor([-1.0, 1.0, 1.0])
    assert float((v.joints - reflected).norm(dim=-1).max()) < 0.02  # the free body is not exactly symmetric


def test_mirrored_camera_flips_the_image(tmp_path):
    m = load_motion(_write_lhm_folder(tmp_path / "src"))
    cam, mc = m.camera, m.mirror().camera
    p = torch.tensor([[0.3, 0.2, -3.0]])
    a, b = cam.project(p), mc.project(p * torch.tensor([-1.0, 1.0, 1.0]))
    assert torch.allclose(b[:, 0], cam.width - a[:, 0], atol=1e-3) and torch.allclose(a[:, 1], b[:, 1], atol=1e-3)


# ---------------------------------------------------------------------------------------------
# presets


def test_preset_listing():
    infos = list_motions()
    names = [i.name for i in infos]
    assert len(infos) >= 12 and names == list(PRESETS)
    for i in infos:
        assert 2.0 <= i.duration <= 8.0 and i.display_name and len(i.display_name) <= 24
        assert i.preview is not None and i.preview.stat().st_size < 300_000, f"no preview for {i.name}"
    total = sum(i.preview.stat().st_size for i in infos)
    assert total < 2 * 2**20


@pytest.fixture(scope="module")
def posed_presets(free_body):
    """Each preset with the free body posed through it: vertices [F,V,3]."""
    return {name: (m := load_motion(name), posed_points(m, free_body)) for name in PRESETS}


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_is_well_formed(name):
    m = load_motion(name)
    assert m.fps == 30.0 and 2.0 <= m.duration <= 8.0 and m.name == name
    assert torch.isfinite(m.full_pose()).all() and torch.isfinite(m.trans).all()
    assert limit_violations(m) == []
    if m.loops:
        # the frame after the last is the first again (a walk one stride on): steps stay small
        q = axis_angle_to_matrix(m.full_pose())
        seam = (q[0] - q[-1]).norm(dim=(-1, -2)).max()
        typical = (q[1:] - q[:-1]).norm(dim=(-1, -2)).amax(-1).quantile(0.9)
        assert float(seam) < 2.5 * float(typical) + 1e-3
        height_step = (m.trans[1:, 1] - m.trans[:-1, 1]).abs().quantile(0.9)
        assert abs(float(m.trans[0, 1] - m.trans[-1, 1])) < 2.5 * float(height_step) + 1e-4


def test_presets_keep_the_feet_on_the_floor(free_body, posed_presets):
    floor = float(free_body.vertices[:, 1].min())
    for name, (m, verts) in posed_presets.items():
        lowest = verts[..., 1].amin(-1) - floor
        assert float(lowest.min()) > -0.02, f"{name} sinks {-float(lowest.min()):.3f} m into the floor"
        grounded = m.contacts.any(-1)
        assert grounded.float().mean() > 0.5, name
        assert float(lowest[grounded].abs().max()) < 0.02, f"{name} floats {float(lowest[grounded].max()):.3f} m"


def test_walk_in_place_does_not_slide(free_body, posed_presets):
    """A planted foot stays put: flat, nothing of it moves; rolling onto the ball, the toes stay."""
    m, verts = posed_presets["walk_in_place"]
    floor = float(free_body.vertices[:, 1].min())
    W = free_body.weights
    for side, col in (("left", 0), ("right", 1)):
        ankle, toes = J[f"{side}_ankle"], J[f"{side}_foot"]
        foot = W[:, [ankle, toes]].sum(1) > 0.5
        heel = foot & (W[:, ankle] > 0.5) & (free_body.vertices[:, 2] < free_body.joints[ankle, 2])
        planted = m.contacts[:-1, col] & m.contacts[1:, col]
        speed = (verts[1:] - verts[:-1])[..., [0, 2]].norm(dim=-1) * m.fps  # [F-1,V] m/s
        toe_speed = speed[planted][:, W[:, toes] > 0.9]
        assert planted.sum() > 30 and float(toe_speed.max()) < 0.02, f"{side} toes slide at {float(toe_speed.max()):.3f} m/s"
        heel_down = verts[:, heel, 1].amin(-1) - floor < 0.005
        flat = planted & heel_down[:-1] & heel_down[1:]
        assert flat.sum() > 20 and float(speed[flat][:, foot].max()) < 0.02, f"the flat {side} foot slides"
    # and it stays in place
    assert float(m.trans[:, [0, 2]].abs().max()) < 0.05


def test_presets_fit_another_body(smplx_body):
    """Solved on another skeleton, planted feet stay planted on that body."""
    m = load_motion("walk", body=smplx_body)
    joints = smplx_body.pose(m.full_pose(), transl=m.trans).joints
    for side, col in (("left", 0), ("right", 1)):
        ball = joints[:, J[f"{side}_foot"]]
        planted = m.contacts[:-1, col] & m.contacts[1:, col]
        assert float((ball[1:] - ball[:-1])[planted].norm(dim=-1).max()) < 1e-4
        assert torch.allclose(ball[m.contacts[:, col], 1], smplx_body.joints[J[f"{side}_foot"], 1], atol=1e-4)


def test_walk_moves_forward_and_run_is_faster(posed_presets):
    walk, run = posed_presets["walk"][0], posed_presets["run"][0]
    v_walk = float(walk.trans[-1, 2] - walk.trans[0, 2]) / walk.duration
    v_run = float(run.trans[-1, 2] - run.trans[0, 2]) / run.duration
    assert 0.8 < v_walk < 1.6 and v_run > 1.5 * v_walk
    assert not run.contacts.any(-1).all(), "a run has flight phases"


def test_turn_turns_all_the_way():
    m = load_motion("turn")
    R = axis_angle_to_matrix(m.root_pose)
    forward = R[:, :, 2]  # where the body faces
    heading = torch.rad2deg(torch.atan2(forward[:, 0], forward[:, 2]))
    total = float(((torch.diff(heading) + 180) % 360 - 180).sum())
    assert abs(total - 360) < 5


def _inside(verts: torch.Tensor, cam: lhm.Camera) -> torch.Tensor:
    """Which points [F,N] project inside the image, in front of the camera."""
    u, v = cam.project(verts).unbind(-1)
    return (cam.world_to_camera(verts)[..., 2] > 0) & (u >= 0) & (u <= cam.width) & (v >= 0) & (v <= cam.height)


def test_default_camera_keeps_the_body_in_view(free_body, posed_presets):
    for name, (m, verts) in posed_presets.items():
        cam = motion_camera(m, free_body, width=96, height=128)
        assert cam.batch_shape == (len(m),)
        inside = _inside(verts, cam)
        assert bool(inside.all()), f"{name}: {int((~inside).sum())} points leave the image"
    # a walker is followed: the camera moves with the body instead of backing off
    walk_cam = motion_camera(posed_presets["walk"][0], free_body)
    assert float((walk_cam.center[-1] - walk_cam.center[0])[2]) > 2.0


@pytest.mark.parametrize("mode", ["front", "orbit"])
def test_front_and_orbit_cameras_keep_the_body_in_view(free_body, posed_presets, mode):
    for name in ("walk", "turn", "jump"):
        m, verts = posed_presets[name]
        cam = motion_camera(m, free_body, mode=mode, width=128, height=96)
        assert bool(_inside(verts, cam).all()), f"{name}/{mode}"
        centre = cam.center
        if mode == "front":
            assert torch.allclose(centre, centre[:1].expand_as(centre))
        else:  # one full turn around the body
            offset = centre - centre.mean(0)
            heading = torch.rad2deg(torch.atan2(offset[:, 0], offset[:, 2]))
            assert float(((torch.diff(heading) + 180) % 360 - 180).sum()) > 330


def test_motion_camera_uses_the_motions_own(tmp_path, free_body):
    m = load_motion(_write_lhm_folder(tmp_path / "src"))
    own = motion_camera(m, free_body, mode="motion")
    assert own.batch_shape == (4,) and torch.allclose(own.K[0], m.camera.K)
    small = motion_camera(m, free_body, mode="motion", width=640, height=480)
    assert torch.allclose(small.K[0, 0, 0], m.camera.K[0, 0] / 2) and small.width == 640
    with pytest.raises(ValueError, match="has no camera"):
        motion_camera(load_motion("idle"), free_body, mode="motion")
    # auto keeps the official framing when the body fits
    far = m.replace(trans=m.trans + torch.tensor([0.0, 0.0, -6.0]))
    assert torch.allclose(motion_camera(far, free_body).K, own.K)
