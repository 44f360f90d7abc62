"""Canonical space, dense sampling and Avatar posing (reference section 3.4-3.6)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import lhm
from lhm.body import skeleton
from lhm.body.canonical import CanonicalSpace, SurfaceSamples, big_pose, load_dense_points, sample_surface
from lhm.geometry import axis_angle_to_quaternion, quaternion_multiply, standardize_quaternion


def _avatar(body, samples, betas=None, seed=0):
    space = CanonicalSpace.from_samples(body, samples)
    n = len(space)
    gen = torch.Generator().manual_seed(seed)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1)
    g = lhm.Gaussians(space.points.clone(), quats, torch.full((n, 3), 0.01), torch.full((n,), 0.9), torch.rand(n, 3, generator=gen))
    return lhm.Avatar.from_canonical(space, body, g, betas=betas)


def test_big_pose():
    p = big_pose()
    assert p[1, 2] == pytest.approx(math.pi / 9) and p[2, 2] == pytest.approx(-math.pi / 9)
    assert p.abs().sum() == pytest.approx(2 * math.pi / 9)


def test_sampling_is_deterministic_and_split(free_body):
    a = sample_surface(free_body, 2000, seed=3)
    b = sample_surface(free_body, 2000, seed=3)
    assert torch.equal(a.points, b.points) and a.num_body == 1500
    assert free_body.head_mask[a.vertex_index[1500:]].all()
    assert not free_body.head_mask[a.vertex_index[:1500]].all()
    # every sample lies on the surface: close to its nearest vertex relative to the mesh resolution
    assert float((a.points - free_body.vertices[a.vertex_index]).norm(dim=1).max()) < 0.05


def test_neutral_transforms_undo_the_big_pose(free_body):
    samples = sample_surface(free_body, 3000)
    space = CanonicalSpace.from_samples(free_body, samples)
    legs = space.weights[:, [1, 2, 4, 5, 7, 8, 10, 11]].sum(1) > 0.5
    assert float((space.points - samples.points)[legs].norm(dim=1).mean()) > 0.05, "legs are spread"
    T0 = torch.einsum("nj,jab->nab", space.weights, space.neutral_transforms)
    back = (T0[:, :3, :3] @ space.points[..., None])[..., 0] + T0[:, :3, 3]
    # exact where one joint carries the point; blended skinning is not exactly invertible (as in LHM)
    single = space.weights.max(1).values > 0.9999
    assert single.sum() > 100
    assert torch.allclose(back[single], samples.points[single], atol=1e-5)
    assert float((back - samples.points).norm(dim=1).max()) < 0.01


def test_dense_point_file(tmp_path, free_body):
    from plyfile import PlyData, PlyElement

    pts = sample_surface(free_body, 400).points.numpy()
    el = PlyElement.describe(np.array([tuple(p) for p in pts], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "vertex")
    PlyData([el]).write(str(tmp_path / "1_400.ply"))
    loaded = load_dense_points(tmp_path / "1_400.ply", 400, free_body)
    assert np.allclose(loaded.points.numpy(), pts) and loaded.num_body == 300
    with pytest.raises(ValueError, match="holds 400 points but the model needs 40000"):
        load_dense_points(tmp_path / "1_400.ply", 40000, free_body)
    (tmp_path / "bad.ply").write_text("garbage")
    with pytest.raises(ValueError, match="not a readable"):
        load_dense_points(tmp_path / "bad.ply", 400, free_body)


@pytest.mark.parametrize("body_name", ["free_body", "smplx_body"])
def test_zero_motion_gives_the_tpose(body_name, request):
    body = request.getfixturevalue(body_name)
    betas = torch.zeros(body.num_betas)
    if body.num_betas:
        betas[0] = 1.0
    samples = sample_surface(body, 2000)
    avatar = _avatar(body, samples, betas)
    posed = avatar.pose(lhm.Motion.rest(2))
    assert posed.means.shape == (2, 2000, 3)
    expected = samples.points + torch.einsum("ncb,b->nc", body.shapedirs[samples.vertex_index], betas)
    assert torch.allclose(posed.means[0], avatar.tpose().means, atol=1e-6)
    assert torch.allclose(posed.means[1], posed.means[0])
    single = avatar.weights.max(1).values > 0.9999
    assert torch.allclose(posed.means[0][single], expected[single], atol=1e-5)
    assert float((posed.means[0] - expected).norm(dim=1).max()) < 0.01
    # Gaussians skinned only to the torso keep their orientation exactly (no big-pose rotation there)
    torso = avatar.weights[:, [0, 3, 6, 9]].sum(1) > 0.999
    assert torso.any() and torch.allclose(posed.quats[0][torso], standardize_quaternion(avatar.gaussians.quats[torso]), atol=1e-5)


def test_raising_the_right_arm_moves_only_the_arm(free_body):
    samples = sample_surface(free_body, 4000)
    avatar = _avatar(free_body, samples)
    angle = math.radians(70)
    pose = torch.zeros(1, 55, 3)
    pose[0, skeleton.JOINT_INDEX["right_shoulder"], 2] = -angle  # right arm (at -x) swings up
    rest = avatar.tpose()
    posed = avatar.pose(pose).frame(0)
    chain = [i for i in range(55) if _descends(i, skeleton.JOINT_INDEX["right_shoulder"])]
    on_arm = avatar.weights[:, chain].sum(1)
    moved = (posed.means - rest.means).norm(dim=1) > 1e-6
    assert torch.equal(moved, on_arm > 0)
    wrist = skeleton.JOINT_INDEX["right_wrist"]
    hand = avatar.weights[:, wrist] > 0.99
    assert float(posed.means[hand, 1].mean()) > float(rest.means[hand, 1].mean()) + 0.3, "the hand goes up"
    # Gaussians fully on the arm are rotated by exactly the arm rotation
    rigid = on_arm > 0.9999
    q_arm = axis_angle_to_quaternion(pose[0, skeleton.JOINT_INDEX["right_shoulder"]])
    expected = quaternion_multiply(q_arm.expand_as(rest.quats[rigid]), rest.quats[rigid])
    assert torch.allclose(posed.quats[rigid], expected, atol=1e-5)
    assert torch.equal(posed.quats[~moved], rest.quats[~moved])


def _descends(j: int, ancestor: int) -> bool:
    while j != -1:
        if j == ancestor:
            return True
        j = skeleton.PARENTS[j]
    return False


def test_avatar_posing_matches_the_body_model(smplx_body):
    """Gaussians at the template vertices follow the SMPL-X vertices (the smplx package agrees with Body.pose)."""
    body = smplx_body
    samples = SurfaceSamples(body.vertices.clone(), torch.arange(len(body.vertices)), len(body.vertices))
    torch.manual_seed(1)
    betas = torch.randn(10)
    avatar = _avatar(body, samples, betas)
    pose = torch.randn(4, 55, 3) * 0.3
    trans = torch.randn(4, 3)
    motion = lhm.Motion.from_full_pose(pose, trans)
    posed = avatar.pose(motion)
    ref = body.pose(pose, betas, trans).vertices
    single = body.weights.max(1).values > 0.9999
    assert single.sum() > 1000
    assert torch.allclose(posed.means[:, single], ref[:, single], atol=5e-5)
    # blended vertices differ by the un-posing approximation only (millimetres, as in LHM)
    assert float((posed.means - ref).norm(dim=-1).max()) < 0.01
    # frames are independent: selecting one gives the same as posing all
    one = avatar.pose(motion, frames=[2])
    assert torch.allclose(one.means[0], posed.means[2], atol=1e-6)
    assert torch.allclose(one.quats[0], posed.quats[2], atol=1e-6)


def test_rigid_mask_keeps_orientation(free_body):
    avatar = _avatar(free_body, sample_surface(free_body, 500))
    avatar.rigid_mask[:] = True
    pose = torch.randn(1, 55, 3) * 0.5
    assert torch.allclose(avatar.pose(pose).quats[0], standardize_quaternion(avatar.gaussians.quats), atol=1e-6)


def test_motion_validation():
    with pytest.raises(ValueError, match="NaN or Inf"):
        lhm.Motion.from_full_pose(torch.full((2, 55, 3), float("nan")))
    with pytest.raises(ValueError, match="expected \\[F,55,3\\]"):
        lhm.Motion.from_full_pose(torch.zeros(2, 52, 3))
    m = lhm.Motion.rest(5)
    assert len(m) == 5 and m.full_pose().shape == (5, 55, 3) and len(m.select(slice(1, 3))) == 2


def test_posed_choices(free_body):
    avatar = _avatar(free_body, sample_surface(free_body, 300))
    motion = lhm.Motion.from_full_pose(torch.randn(3, 55, 3) * 0.2)
    assert torch.equal(avatar.posed("canonical").means, avatar.gaussians.means)
    assert torch.allclose(avatar.posed(1, motion).means, avatar.pose(motion).means[1], atol=1e-6)
    with pytest.raises(ValueError, match="outside the motion"):
        avatar.posed(7, motion)
    with pytest.raises(ValueError, match="needs a motion"):
        avatar.posed(0)


def test_skinning_kernel_matches_the_torch_reference(free_body):
    """The CPU kernel (sparse weights, fused quaternion) against the plain torch reference, rigid Gaussians included."""
    from lhm.skinning import skin_gaussians, skin_gaussians_torch, sparse_weights

    avatar = _avatar(free_body, sample_surface(free_body, 3000, seed=1), betas=torch.randn(free_body.num_betas) * 0.5)
    avatar.rigid_mask[::7] = True
    weights, z, R0 = avatar._rest()
    assert isinstance(weights, tuple)  # the cached sparse form
    gen = torch.Generator().manual_seed(3)
    A = torch.eye(4).repeat(4, 55, 1, 1)
    A[:, :, :3, :3] = lhm.geometry.axis_angle_to_matrix(torch.randn(4, 55, 3, generator=gen))
    A[:, :, :3, 3] = torch.randn(4, 55, 3, generator=gen) * 0.1
    trans = torch.randn(4, 3, generator=gen)
    with torch.no_grad():
        fast = skin_gaussians(weights, A, z, R0, avatar.gaussians.quats, avatar.rigid_mask, trans)
    ref = skin_gaussians_torch(avatar.weights, A, z, R0, avatar.gaussians.quats, avatar.rigid_mask, trans)
    torch.testing.assert_close(fast[0], ref[0], atol=2e-6, rtol=0)
    torch.testing.assert_close(fast[1], ref[1], atol=2e-6, rtol=0)
    index, values = sparse_weights(avatar.weights)
    assert torch.equal(avatar.weights.gather(1, index), values) and torch.allclose(values.sum(1), torch.ones(3000))


def test_posing_is_differentiable_and_the_cache_follows_changes(free_body):
    avatar = _avatar(free_body, sample_surface(free_body, 500, seed=2))
    pose = torch.zeros(1, 55, 3)
    pose[0, 16, 2] = 0.8
    before = avatar.pose(pose).means
    means = avatar.gaussians.means.clone().requires_grad_(True)
    moved = avatar.gaussians.replace(means=means)
    grad_avatar = lhm.Avatar(moved, avatar.weights, avatar.shapedirs, avatar.neutral_transforms, avatar.body,
                             avatar.betas)
    out = grad_avatar.pose(pose)
    out.means.sum().backward()
    assert means.grad is not None and torch.isfinite(means.grad).all() and means.grad.abs().sum() > 0
    with torch.no_grad():
        avatar.gaussians.means[:, 1] += 0.1  # in-place edit: the cached rest positions must follow
    fresh = lhm.Avatar(avatar.gaussians.replace(means=avatar.gaussians.means.clone()), avatar.weights, avatar.shapedirs,
                       avatar.neutral_transforms, avatar.body, avatar.betas)
    after = avatar.pose(pose).means
    assert not torch.allclose(after, before)
    torch.testing.assert_close(after, fresh.pose(pose).means)
