"""Tests of the CPU Gaussian rasterizer against a plain per-pixel reference, analytic cases,
finite differences, batching and the device dispatch (the CUDA path needs a GPU and is not run)."""
from __future__ import annotations

import math
import sys

import pytest
import torch

from lhm.gaussians import Gaussians
from lhm.render import Camera, cpu, frame_points, orbit_cameras, render, turntable
from lhm.render import _select_backend

W, H = 37, 29  # odd sizes: partial 16x16 tiles on both axes


# ---------------------------------------------------------------------------------------------
# reference: every Gaussian, every pixel, written out from the 3DGS / gsplat equations
# ---------------------------------------------------------------------------------------------

def _quat_to_rot(q):
    w, x, y, z = q / q.norm()
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)]),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)]),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]),
    ])


def reference_render(g: Gaussians, cam: Camera, background):
    """Float64 per-pixel compositing; differentiable by autograd (cut-offs are masks)."""
    K, V = cam.K.double(), cam.viewmat.double()
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    ys, xs = torch.meshgrid(torch.arange(cam.height, dtype=torch.float64) + 0.5,
                            torch.arange(cam.width, dtype=torch.float64) + 0.5, indexing="ij")
    splats = []
    for i in range(len(g)):
        x, y, z = V[:3, :3] @ g.means[i] + V[:3, 3]
        if z <= 0.01:
            continue
        R = _quat_to_rot(g.quats[i])
        cov = V[:3, :3] @ R @ torch.diag(g.scales[i] ** 2) @ R.T @ V[:3, :3].T
        # gsplat evaluates the Jacobian at the mean clamped to 1.3x the field of view
        lim = 0.3 * cam.width / 2 / fx
        tx = z * torch.clamp(x / z, -(cx / fx + lim), (cam.width - cx) / fx + lim)
        lim = 0.3 * cam.height / 2 / fy
        ty = z * torch.clamp(y / z, -(cy / fy + lim), (cam.height - cy) / fy + lim)
        zero = torch.zeros((), dtype=torch.float64)
        J = torch.stack([torch.stack([fx / z, zero, -fx * tx / z ** 2]),
                         torch.stack([zero, fy / z, -fy * ty / z ** 2])])
        conic = torch.linalg.inv(J @ cov @ J.T + 0.3 * torch.eye(2, dtype=torch.float64))
        mean2d = torch.stack([fx * x / z + cx, fy * y / z + cy])
        splats.append((z, mean2d, conic, g.opacities[i], g.colors[i]))
    splats.sort(key=lambda s: float(s[0].detach()))
    T = torch.ones(cam.height, cam.width, dtype=torch.float64)
    rgb = torch.zeros(cam.height, cam.width, 3, dtype=torch.float64)
    depth = torch.zeros(cam.height, cam.width, dtype=torch.float64)
    done = torch.zeros(cam.height, cam.width, dtype=torch.bool)
    for z, m, conic, o, c in splats:
        dx, dy = m[0] - xs, m[1] - ys
        power = 0.5 * (conic[0, 0] * dx * dx + conic[1, 1] * dy * dy) + conic[0, 1] * dx * dy
        alpha = torch.clamp(o * torch.exp(-power), max=0.999)
        use = ~done & (power >= 0) & (alpha >= 1 / 255)
        next_T = T * (1 - alpha)
        stop = use & (next_T <= 1e-4)
        done = done | stop
        use = use & ~stop
        w = torch.where(use, alpha * T, torch.zeros_like(T))
        rgb = rgb + w[..., None] * c
        depth = depth + w * z
        T = torch.where(use, next_T, T)
    alpha = 1 - T
    rgb = rgb + T[..., None] * torch.as_tensor(background, dtype=torch.float64)
    return rgb, alpha, depth / alpha.clamp_min(1e-10)


def random_scene(n=10, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.rand(*s, generator=gen, dtype=dtype)
    means = (r(n, 3) - 0.5) * torch.tensor([1.6, 1.2, 1.0], dtype=dtype)
    g = Gaussians(means=means, quats=r(n, 4) - 0.5, scales=0.03 + 0.15 * r(n, 3),
                  opacities=0.05 + 0.95 * r(n), colors=r(n, 3))
    return g


def camera(eye=(0.0, 0.0, 3.0), target=(0.0, 0.0, 0.0)):
    return Camera.look_at(eye, target, W, H, fov_y_deg=40.0)


def with_grad(g: Gaussians) -> Gaussians:
    return Gaussians(**{k: getattr(g, k).detach().clone().requires_grad_(True)
                        for k in ("means", "quats", "scales", "opacities", "colors")})


FIELDS = ("means", "quats", "scales", "opacities", "colors")


# ---------------------------------------------------------------------------------------------
# forward
# ---------------------------------------------------------------------------------------------

def hard_scene():
    """Random splats plus every special case: an opaque stack (alpha clamp, early termination), one
    behind the camera, one faint (opacity < 1/255), one off-screen whose splat still reaches in
    (clamped Jacobian)."""
    g = random_scene(12)
    extra = Gaussians(
        means=torch.tensor([[0.1, 0.0, 0.5], [0.1, 0.02, 0.45], [0.12, 0.0, 0.4], [0.0, 0.0, 3.5],
                            [0.0, 0.1, 0.2], [1.6, 0.0, 0.0]]),
        quats=torch.tensor([[1.0, 0, 0, 0]] * 6),
        scales=torch.tensor([[0.2, 0.2, 0.2]] * 5 + [[0.6, 0.4, 0.3]]),
        opacities=torch.tensor([1.0, 1.0, 1.0, 1.0, 0.003, 0.9]),
        colors=torch.rand(6, 3, generator=torch.Generator().manual_seed(3)))
    g = Gaussians(**{k: torch.cat([getattr(g, k), getattr(extra, k)]) for k in FIELDS})
    return g, camera(eye=(0.4, 0.3, 3.0)), (0.2, 0.5, 0.9)


def test_matches_reference():
    g, cam, bg = hard_scene()
    out = render(g, cam, background=bg)
    ref_rgb, ref_alpha, ref_depth = reference_render(g.to(torch.float64), cam, bg)
    assert out.rgb.shape == (H, W, 3) and out.alpha.shape == (H, W, 1) and out.depth.shape == (H, W)
    assert (out.rgb.double() - ref_rgb).abs().max() <= 1e-4
    assert (out.alpha[..., 0].double() - ref_alpha).abs().max() <= 1e-4
    # depth is normalised by alpha, so compare the accumulated (alpha-weighted) depth
    assert (out.depth.double() * ref_alpha - ref_depth * ref_alpha).abs().max() <= 1e-4 * 3
    # the opaque stack reached the 0.999 clamp, and termination kept T above 1e-4 (3 layers would not)
    assert 0.998 < ref_alpha.max() < 1 - 1e-4


def test_isotropic_peak():
    f, z, s, o = 40.0, 2.0, 0.05, 0.8
    K = torch.tensor([[f, 0.0, 10.5], [0.0, f, 7.5], [0.0, 0.0, 1.0]])  # the mean lands on pixel (10, 7)
    cam = Camera(K, torch.eye(4), W, H)
    g = Gaussians(means=torch.tensor([[0.0, 0.0, z]]), quats=torch.tensor([[1.0, 0.0, 0.0, 0.0]]),
                  scales=torch.full((1, 3), s), opacities=torch.tensor([o]), colors=torch.tensor([[1.0, 0.5, 0.25]]))
    out = render(g, cam, background=0.0)
    a = out.alpha[..., 0]
    assert divmod(int(a.argmax()), W) == (7, 10)
    assert a[7, 10].item() == pytest.approx(o, abs=1e-6)
    assert out.rgb[7, 10].tolist() == pytest.approx([o, o / 2, o / 4], abs=1e-6)
    assert out.depth[7, 10].item() == pytest.approx(z, abs=1e-5)
    var = (f * s / z) ** 2 + 0.3  # EWA variance in pixels plus the low-pass
    assert a[7, 11].item() == pytest.approx(o * math.exp(-0.5 / var), abs=1e-6)
    assert a[9, 10].item() == pytest.approx(o * math.exp(-0.5 * 4 / var), abs=1e-6)


def _two_splats(z_red, z_blue):
    return Gaussians(means=torch.tensor([[0.0, 0.0, z_red], [0.0, 0.0, z_blue]]),
                     quats=torch.tensor([[1.0, 0, 0, 0]] * 2), scales=torch.full((2, 3), 0.2),
                     opacities=torch.tensor([0.9, 0.9]), colors=torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]))


def test_depth_order():
    cam = camera()
    centre = (H // 2, W // 2)
    red_front = render(_two_splats(0.5, -0.5), cam).rgb[centre]
    blue_front = render(_two_splats(-0.5, 0.5), cam).rgb[centre]
    assert red_front[0] > 0.85 and red_front[2] < 0.1
    assert blue_front[2] > 0.85 and blue_front[0] < 0.1
    # input order does not matter, only depth
    g = _two_splats(0.5, -0.5)
    flipped = Gaussians(**{k: getattr(g, k).flip(0) for k in FIELDS})
    assert torch.equal(render(flipped, cam).rgb, render(g, cam).rgb)


def test_background_blending():
    g, cam = random_scene(6), camera()
    a = render(g, cam, background=(1.0, 0.0, 0.0))
    b = render(g, cam, background=torch.tensor([0.0, 1.0, 0.5]))
    expected = (1 - a.alpha) * torch.tensor([1.0, -1.0, -0.5])
    assert torch.allclose(a.rgb - b.rgb, expected, atol=1e-6)
    empty = a.alpha[..., 0] == 0
    assert empty.any() and torch.all(a.rgb[empty] == torch.tensor([1.0, 0.0, 0.0]))


@pytest.mark.parametrize("case", ["no_gaussians", "all_behind"])
def test_empty_scene(case):
    g = with_grad(random_scene(0 if case == "no_gaussians" else 5))
    if case == "all_behind":
        g.means.data[:, 2] += 4.0  # the camera sits at z = 3 looking down -z
    out = render(g, camera(), background=(0.1, 0.2, 0.3))
    assert torch.all(out.alpha == 0) and torch.all(out.depth == 0)
    assert torch.allclose(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(H, W, 3))
    (out.rgb.sum() + out.alpha.sum()).backward()
    assert all(torch.all(getattr(g, k).grad == 0) for k in FIELDS)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics(degree):
    gen = torch.Generator().manual_seed(degree)
    g = random_scene(8)
    sh = 0.3 * torch.randn(8, (degree + 1) ** 2, 3, generator=gen)
    out = render(g.replace(colors=sh), camera(eye=(0.5, 0.4, 3.0)))
    # the same image with the colours evaluated from the camera centre (gsplat's convention)
    dirs = g.means - camera(eye=(0.5, 0.4, 3.0)).center
    rgb = torch.clamp_min(cpu.eval_sh(degree, dirs, sh) + 0.5, 0.0)
    ref = render(g.replace(colors=rgb), camera(eye=(0.5, 0.4, 3.0)))
    assert torch.allclose(out.rgb, ref.rgb, atol=1e-6)
    if degree == 1:  # the basis written out: C0 and C1 (-y, z, -x) on the unit direction
        d = torch.nn.functional.normalize(dirs, dim=-1)
        basis = torch.stack([torch.full_like(d[:, 0], 0.28209479177387814), -0.4886025119029199 * d[:, 1],
                             0.4886025119029199 * d[:, 2], -0.4886025119029199 * d[:, 0]], dim=-1)
        assert torch.allclose(cpu.eval_sh(1, dirs, sh), (basis[..., None] * sh).sum(1), atol=1e-6)
    torch_impl = pytest.importorskip("gsplat.cuda._torch_impl")
    assert torch.allclose(cpu.eval_sh(degree, dirs, sh), torch_impl._spherical_harmonics(degree, dirs, sh), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# gradients
# ---------------------------------------------------------------------------------------------

def _loss_weights(seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(H, W, 3, generator=gen), torch.rand(H, W, generator=gen), torch.rand(H, W, generator=gen)


def _loss(out, weights):
    wc, wa, wd = weights
    return (out.rgb * wc).sum() + (out.alpha[..., 0] * wa).sum() + (out.depth * out.alpha[..., 0] * wd).sum()


@pytest.mark.parametrize("scene", ["random", "hard"])
def test_gradients_match_reference_autograd(scene):
    """Analytic kernels vs autograd through the float64 reference (its cut-offs are masks too)."""
    if scene == "random":
        g, cam, bg = random_scene(10, seed=4), camera(eye=(0.3, -0.2, 3.0)), (0.3, 0.6, 0.1)
    else:
        g, cam, bg = hard_scene()
    g, weights = with_grad(g), _loss_weights()
    _loss(render(g, cam, background=bg), weights).backward()
    ref = with_grad(g.detach().to(torch.float64))
    rgb, alpha, depth = reference_render(ref, cam, bg)
    wc, wa, wd = weights
    ((rgb * wc).sum() + (alpha * wa).sum() + (depth * alpha * wd).sum()).backward()
    for k in FIELDS:
        got, want = getattr(g, k).grad.double(), getattr(ref, k).grad
        assert (got - want).abs().max() <= 1e-4 * want.abs().max(), k


def test_gradients_finite_differences():
    """Central differences of the float32 renderer on a smooth scene: every pixel lies well inside
    every splat's 1/255 ellipse and no pixel saturates, so the image is smooth in every parameter."""
    g = Gaussians(means=torch.tensor([[0.1, -0.05, 0.3], [-0.15, 0.1, 0.0], [0.05, 0.1, -0.3]]),
                  quats=torch.tensor([[0.9, 0.2, -0.1, 0.3], [0.8, -0.3, 0.4, 0.1], [1.0, 0.1, 0.2, -0.2]]),
                  scales=torch.tensor([[0.9, 0.6, 0.7], [0.7, 1.0, 0.6], [0.8, 0.7, 1.1]]),
                  opacities=torch.tensor([0.5, 0.4, 0.6]),
                  colors=torch.tensor([[0.9, 0.2, 0.3], [0.1, 0.8, 0.4], [0.3, 0.3, 0.9]]))
    cam, weights = camera(), _loss_weights(2)
    gg = with_grad(g)
    _loss(render(gg, cam, background=(0.5, 0.5, 0.5)), weights).backward()
    h = 1e-2
    for k in FIELDS:
        analytic = getattr(gg, k).grad
        numeric = torch.zeros_like(analytic)
        for i in range(analytic.numel()):
            def loss_at(step):
                t = getattr(g, k).clone()
                t.view(-1)[i] += step
                return _loss(render(g.replace(**{k: t}), cam, background=(0.5, 0.5, 0.5)), weights).double()
            numeric.view(-1)[i] = (loss_at(h) - loss_at(-h)) / (2 * h)
        assert (analytic - numeric).abs().max() <= 2e-3 * numeric.abs().max(), k


# ---------------------------------------------------------------------------------------------
# batching and dispatch
# ---------------------------------------------------------------------------------------------

def test_batches_match_single_renders():
    frames = [random_scene(8, seed=s) for s in range(3)]
    g = Gaussians(**{k: torch.stack([getattr(f, k) for f in frames]) for k in FIELDS})
    cams = orbit_cameras((0.0, 0.0, 0.0), 3.0, 3, W, H, elevation_deg=10.0)
    bgs = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.2, 0.4, 0.6]])
    cases = {
        "frames x cameras": (g, cams, lambda i: (frames[i], cams[i])),
        "one set x cameras": (frames[0], cams, lambda i: (frames[0], cams[i])),
        "frames x one camera": (g, cams[1], lambda i: (frames[i], cams[1])),
    }
    for name, (gb, cb, single) in cases.items():
        out = render(gb, cb, background=bgs)
        assert out.rgb.shape == (3, H, W, 3), name
        for i in range(3):
            one = render(*single(i), background=bgs[i])
            assert torch.allclose(out.rgb[i], one.rgb, atol=1e-6), name
            assert torch.allclose(out.alpha[i], one.alpha, atol=1e-6), name
            # depth is divided by alpha: compare the accumulated depth (float32 rounding ~1e-7 x 3 m)
            assert torch.allclose(out.depth[i] * one.alpha[..., 0], one.depth * one.alpha[..., 0], atol=1e-5), name
    # gradients of a batch are the sums of the per-frame gradients
    gb = with_grad(frames[0])
    render(gb, cams, background=bgs).rgb.sum().backward()
    single = with_grad(frames[0])
    sum(render(single, cams[i], background=bgs[i]).rgb.sum() for i in range(3)).backward()
    for k in FIELDS:
        assert torch.allclose(getattr(gb, k).grad, getattr(single, k).grad, atol=1e-4), k


def test_cpu_never_uses_gsplat(monkeypatch):
    assert _select_backend(torch.device("cpu")) is cpu.rasterize
    monkeypatch.setitem(sys.modules, "gsplat", None)  # any import of gsplat would now fail
    out = render(random_scene(4), camera())
    assert out.alpha.max() > 0


# ---------------------------------------------------------------------------------------------
# camera helpers
# ---------------------------------------------------------------------------------------------

def test_project_matches_a_pinhole_and_the_renderer():
    K = torch.tensor([[100.0, 0.0, 20.0], [0.0, 120.0, 15.0], [0.0, 0.0, 1.0]])
    V = torch.eye(4)
    V[2, 3] = 2.0
    cam = Camera(K, V, W, H)
    pts = torch.tensor([[0.5, -0.3, 1.0], [0.0, 0.0, 0.0]])
    expected = torch.tensor([[100 * 0.5 / 3 + 20, 120 * -0.3 / 3 + 15], [20.0, 15.0]])
    torch.testing.assert_close(cam.project(pts), expected)
    torch.testing.assert_close(cam.world_to_camera(pts), pts + torch.tensor([0.0, 0.0, 2.0]))

    # batched cameras: the centres the rasterizer splats at, and its camera-z depths
    g = random_scene(16)
    cams = orbit_cameras((0.0, 0.0, 0.0), 3.0, 3, W, H, elevation_deg=20.0)
    arrays = tuple(cpu._np32(t) for t in (g.means[None], g.quats[None], g.scales[None], g.opacities[None],
                                          g.colors[None], cams.viewmat, cams.K))
    means2d, _, feats, _, valid = cpu._project(*arrays, W, H, 0.01, 0.3)
    assert valid.all()
    uv = cams.project(g.means)
    assert uv.shape == (3, 16, 2)
    torch.testing.assert_close(uv, torch.from_numpy(means2d), atol=1e-4, rtol=0)
    torch.testing.assert_close(cams.world_to_camera(g.means)[..., 2], torch.from_numpy(feats[..., 3]))
    # per-frame points through per-frame cameras, and float64 points
    frames = g.means + torch.randn(3, 1, 3, generator=torch.Generator().manual_seed(1)) * 0.1
    for i in range(3):
        torch.testing.assert_close(cams.project(frames)[i], cams[i].project(frames[i]))
    assert cams.project(frames.double()).dtype == torch.float64


def test_scaled_camera_scales_the_projection():
    cams = orbit_cameras((0.0, 0.0, 0.0), 3.0, 2, W, H, elevation_deg=20.0)
    pts = random_scene(8).means
    double = cams.scaled(2 * H)
    assert (double.width, double.height) == (2 * W, 2 * H)
    torch.testing.assert_close(double.project(pts), 2 * cams.project(pts))
    # the rounded width: each axis scales by its own size ratio
    small = cams.scaled(20)
    assert (small.width, small.height) == (round(W * 20 / H), 20)
    ratio = torch.tensor([small.width / W, 20 / H])
    torch.testing.assert_close(small.project(pts), cams.project(pts) * ratio)
    odd = cams.scaled(10, 30)
    assert (odd.width, odd.height) == (30, 10)
    torch.testing.assert_close(odd.project(pts), cams.project(pts) * torch.tensor([30 / W, 10 / H]))
    torch.testing.assert_close(double.viewmat, cams.viewmat)
    assert torch.equal(cams.scaled(H).K, cams.K)


def test_frame_points_and_orbits():
    gen = torch.Generator().manual_seed(0)
    body = torch.randn(2, 500, 3, generator=gen) * torch.tensor([0.25, 0.5, 0.12]) + torch.tensor([0.3, 1.0, 0.0])
    body[1, :, 0] += 0.4  # the second frame walks to the side: the camera must frame both
    cam = frame_points(body, 64, 96, "front", margin=0.1)
    assert cam.center[2] > 1.0  # on +z, looking towards -z
    uv = cam.project(body.reshape(-1, 3))
    assert uv[:, 0].min() >= 0.1 * 64 - 1e-3 and uv[:, 0].max() <= 0.9 * 64 + 1e-3
    assert uv[:, 1].min() >= 0.1 * 96 - 1e-3 and uv[:, 1].max() <= 0.9 * 96 + 1e-3
    # tight: some point touches the margin
    touches = [(uv[:, 0] - 6.4).abs().min(), (uv[:, 0] - 57.6).abs().min(),
               (uv[:, 1] - 9.6).abs().min(), (uv[:, 1] - 86.4).abs().min()]
    assert min(touches) < 0.05
    side = frame_points(body, 64, 96, "left")
    assert side.center[0] > 1.0

    orbit = orbit_cameras((0.0, 1.0, 0.0), 2.5, 4, 64, 64, elevation_deg=30.0)
    assert len(orbit) == 4 and orbit.batch_shape == (4,)
    centres = orbit.center
    assert torch.allclose((centres - torch.tensor([0.0, 1.0, 0.0])).norm(dim=-1), torch.full((4,), 2.5), atol=1e-5)
    assert torch.allclose(centres[0], torch.tensor([0.0, 1.0 + 2.5 * 0.5, 2.5 * math.cos(math.radians(30))]), atol=1e-5)
    assert centres[1, 0] > 2.0  # a quarter turn towards +x

    table = turntable(body, 8, 64, 96, elevation_deg=10.0)
    uv = table.project(body.reshape(-1, 3))
    assert uv[..., 0].min() >= 0 and uv[..., 0].max() <= 64 and uv[..., 1].min() >= 0 and uv[..., 1].max() <= 96
