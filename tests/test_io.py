"""File formats: 3DGS .ply and .splat round trips checked with independent readers, and video/preview output."""
from __future__ import annotations

import imageio_ffmpeg
import numpy as np
import plyfile
import pytest
import torch
import trimesh
from PIL import Image

from lhm.gaussians import Gaussians
from lhm.io import load_ply, load_splat, save_frames, save_ply, save_preview, save_splat, save_video
from lhm.io.ply import SH_C0

PLY_NAMES = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]


def random_gaussians(n: int = 2000, seed: int = 0, sh_bands: int | None = None) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    colors = torch.rand(n, 3, generator=gen) if sh_bands is None else torch.randn(n, sh_bands, 3, generator=gen)
    return Gaussians(
        means=torch.randn(n, 3, generator=gen),
        quats=torch.nn.functional.normalize(torch.randn(n, 4, generator=gen), dim=-1),
        scales=torch.exp(torch.rand(n, 3, generator=gen) * 9.5 - 9.0),  # 1e-4 m to 1.6 m
        opacities=torch.rand(n, generator=gen) * (1 - 2e-3) + 1e-3,
        colors=colors,
    )


def gradio_draws_as_splats(data: bytes) -> bool:
    """gradio 6's rule (Model3D-*.js, functions L and R) plus what gsplat.js's PLY loader needs."""
    if not data.startswith(b"ply\n"):  # gsplat.js checks these four bytes
        return False
    end = data.find(b"end_header\n")
    if end < 0 or end > 10 * 1024:  # gsplat.js only decodes the first 10 KiB for the header
        return False
    lines = data[:end].decode("ascii").split("\n")
    elements = [line.split() for line in lines if line.startswith("element ")]
    props = [line.split(" ") for line in lines if line.startswith("property ")]
    if any(e[1] == "face" and int(e[2]) > 0 for e in elements) or [e[1] for e in elements] != ["vertex"]:
        return False
    names = {p[2] for p in props}
    needed = {"x", "y", "z", "scale_0", "scale_1", "scale_2", "opacity", "rot_0", "rot_1", "rot_2", "rot_3"}
    colours = {"red", "green", "blue", "f_dc_0", "f_dc_1", "f_dc_2"}
    # gsplat.js reads only float/int and splits on single spaces
    return needed <= names and len(colours & names) >= 3 and all(len(p) == 3 and p[1] == "float" for p in props)


def assert_round_trip(a: Gaussians, b: Gaussians) -> None:
    # measured worst cases: float32 rounding of the stored log/logit/f_dc, and one ulp from normalising
    assert torch.equal(a.means, b.means)
    torch.testing.assert_close(b.quats, a.quats, rtol=0, atol=3e-7)
    torch.testing.assert_close(b.scales, a.scales, rtol=1e-6, atol=0)
    torch.testing.assert_close(b.opacities, a.opacities, rtol=0, atol=1e-7)
    torch.testing.assert_close(b.colors, a.colors, rtol=0, atol=1e-7)


# ----------------------------------------------------------------------------- .ply

def test_ply_round_trip_is_float32_exact(tmp_path):
    g = random_gaussians()
    path = save_ply(tmp_path / "sub" / "avatar.ply", g)
    back = load_ply(str(path))
    assert all(getattr(back, k).dtype == torch.float32 for k in ("means", "quats", "scales", "opacities", "colors"))
    assert_round_trip(g, back)


def test_ply_read_independently_with_plyfile_and_trimesh(tmp_path):
    g = random_gaussians(300)
    path = save_ply(tmp_path / "a.ply", g)
    ply = plyfile.PlyData.read(str(path))
    assert ply.text is False and ply.byte_order == "<"
    assert [e.name for e in ply.elements] == ["vertex"]
    vertex = ply["vertex"]
    assert [p.name for p in vertex.properties] == PLY_NAMES
    assert all(vertex.data.dtype[name] == np.dtype("<f4") for name in PLY_NAMES)
    assert vertex.count == 300
    assert path.stat().st_size == len(ply.header) + 1 + 300 * 17 * 4  # header, "\n", nothing after the rows

    def col(*names):
        return np.stack([vertex[n] for n in names], axis=-1)

    np.testing.assert_array_equal(col("x", "y", "z"), g.means.numpy())
    np.testing.assert_array_equal(col("nx", "ny", "nz"), 0)
    np.testing.assert_array_equal(col("rot_0", "rot_1", "rot_2", "rot_3"), g.quats.numpy())
    np.testing.assert_allclose(col("scale_0", "scale_1", "scale_2"), np.log(g.scales.double().numpy()), atol=1e-6)
    p = g.opacities.double().numpy()
    np.testing.assert_allclose(vertex["opacity"], np.log(p / (1 - p)), atol=1e-6)
    np.testing.assert_allclose(col("f_dc_0", "f_dc_1", "f_dc_2"), (g.colors.double().numpy() - 0.5) / SH_C0, atol=1e-6)

    cloud = trimesh.load(path)
    assert isinstance(cloud, trimesh.PointCloud)
    np.testing.assert_array_equal(cloud.vertices, g.means.numpy())


def test_ply_header_is_what_gradio_draws_as_splats(tmp_path):
    path = save_ply(tmp_path / "a.ply", random_gaussians(5))
    data = path.read_bytes()
    assert gradio_draws_as_splats(data)
    assert data.startswith(b"ply\nformat binary_little_endian 1.0\nelement vertex 5\nproperty float x\n")
    # the checker itself rejects what gradio would hand to its mesh renderer
    assert not gradio_draws_as_splats(data.replace(b"property float opacity\n", b"property float opacit\n"))
    assert not gradio_draws_as_splats(data.replace(b"end_header\n", b"element face 1\nend_header\n"))


def test_ply_clamps_opacity_and_scale(tmp_path):
    g = random_gaussians(4)
    g = g.replace(opacities=torch.tensor([0.0, 1.0, 0.5, 1e-3]), scales=g.scales.index_fill(0, torch.tensor([0]), 0.0))
    back = load_ply(save_ply(tmp_path / "a.ply", g))
    torch.testing.assert_close(back.opacities, torch.tensor([1e-3, 1 - 1e-3, 0.5, 1e-3]), rtol=0, atol=1e-7)
    torch.testing.assert_close(back.scales[0], torch.full((3,), 1e-8), rtol=1e-6, atol=0)
    assert np.isfinite(plyfile.PlyData.read(str(tmp_path / "a.ply"))["vertex"].data.tolist()).all()


def test_ply_sh_colours_round_trip(tmp_path):
    g = random_gaussians(50, sh_bands=4)
    path = save_ply(tmp_path / "sh.ply", g)
    vertex = plyfile.PlyData.read(str(path))["vertex"]
    names = [p.name for p in vertex.properties]
    assert names == PLY_NAMES[:9] + [f"f_rest_{i}" for i in range(9)] + PLY_NAMES[9:]
    # the reference code's layout: f_rest_{channel * (K-1) + band - 1}
    np.testing.assert_array_equal(vertex["f_rest_4"], g.colors[:, 2, 1].numpy())
    back = load_ply(path, sh=True)
    assert back.sh_degree == 1
    torch.testing.assert_close(back.colors, g.colors, rtol=0, atol=0)
    rgb = load_ply(path).colors
    torch.testing.assert_close(rgb, (g.colors[:, 0] * SH_C0 + 0.5).clamp(0, 1))


def test_ply_y_down_is_the_set_turned_half_a_turn_about_x(tmp_path):
    from lhm.geometry import quaternion_to_matrix
    from lhm.render.cpu import eval_sh

    g = random_gaussians(50)
    back = load_ply(save_ply(tmp_path / "down.ply", g, y_down=True))
    w, x, y, z = g.quats.unbind(-1)
    assert_round_trip(g.replace(means=g.means * torch.tensor([1.0, -1.0, -1.0]),
                                quats=torch.stack([-x, w, -z, y], dim=-1)), back)
    # the quaternions turn each Gaussian as the points turn: R_x(pi) R
    turn = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(quaternion_to_matrix(back.quats), turn @ quaternion_to_matrix(g.quats), atol=1e-6, rtol=0)
    # SH colours seen along a turned direction are those seen along the direction before
    sh = random_gaussians(50, sh_bands=16)
    turned = load_ply(save_ply(tmp_path / "sh.ply", sh, y_down=True), sh=True)
    dirs = torch.randn(50, 3)
    torch.testing.assert_close(eval_sh(3, dirs @ turn, turned.colors), eval_sh(3, dirs, sh.colors), atol=1e-5, rtol=0)


def test_ply_from_another_tool(tmp_path):
    g = random_gaussians(20)
    p = g.opacities.double().numpy()
    columns = {
        "rot_2": g.quats[:, 2] * 3, "rot_0": g.quats[:, 0] * 3, "rot_3": g.quats[:, 3] * 3, "rot_1": g.quats[:, 1] * 3,
        "opacity": np.log(p / (1 - p)), "z": g.means[:, 2], "x": g.means[:, 0], "y": g.means[:, 1],
        **{f"scale_{i}": np.log(g.scales[:, i].double().numpy()) for i in range(3)},
        **{f"f_dc_{i}": (g.colors[:, i].double().numpy() - 0.5) / SH_C0 for i in range(3)},
        **{f"f_rest_{i}": np.ones(20) for i in range(45)},
    }
    data = np.empty(20, dtype=[(k, "f8") for k in columns])
    for k, v in columns.items():
        data[k] = np.asarray(v)
    vertex = plyfile.PlyElement.describe(data, "vertex")
    faces = plyfile.PlyElement.describe(np.empty(0, dtype=[("vertex_indices", "O")]), "face")
    for text in (False, True):
        path = tmp_path / f"other_{text}.ply"
        plyfile.PlyData([vertex, faces], text=text, byte_order=">").write(str(path))
        back = load_ply(path)
        torch.testing.assert_close(back.means, g.means)
        torch.testing.assert_close(back.quats, g.quats)  # normalised
        torch.testing.assert_close(back.scales, g.scales)
        torch.testing.assert_close(back.opacities, g.opacities)
        torch.testing.assert_close(back.colors, g.colors)
        assert load_ply(path, sh=True).sh_degree == 3


def test_ply_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match="unbatched"):
        save_ply(tmp_path / "b.ply", Gaussians(torch.zeros(2, 3, 3), torch.ones(2, 3, 4), torch.ones(2, 3, 3),
                                                torch.ones(2, 3), torch.ones(2, 3, 3)))
    bad = random_gaussians(3)
    bad.means[1, 0] = float("nan")
    with pytest.raises(ValueError, match="means.*NaN"):
        save_ply(tmp_path / "nan.ply", bad)

    good = save_ply(tmp_path / "good.ply", random_gaussians(10)).read_bytes()
    cases = {
        "text.ply": (b"hello, I am not a ply file\n", "not a readable PLY"),
        "binary.ply": (bytes(range(256)), "not a readable PLY"),
        "empty.ply": (b"", "not a readable PLY"),
        "truncated.ply": (good[:-7], "not a readable PLY"),
        "header_only.ply": (good[: good.index(b"end_header")], "not a readable PLY"),
        "mesh.ply": (b"ply\nformat ascii 1.0\nelement face 0\nproperty list uchar int vertex_indices\nend_header\n",
                     "no 'vertex' element"),
        "points.ply": (good.replace(b"property float opacity\n", b"property float alpha\n")
                       .replace(b"property float rot_3\n", b"property float rot_9\n"), "lacks opacity, rot_3"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(ValueError, match=message) as info:
            load_ply(path)
        assert name in str(info.value)
    sh = save_ply(tmp_path / "sh.ply", random_gaussians(10, sh_bands=4)).read_bytes()
    (tmp_path / "partial_sh.ply").write_bytes(sh.replace(b"f_rest_8\n", b"f_rest_9\n"))
    with pytest.raises(ValueError, match="partial_sh.ply.*not a full set of SH bands"):
        load_ply(tmp_path / "partial_sh.ply", sh=True)


# ----------------------------------------------------------------------------- .splat

def test_splat_bytes_order_and_values(tmp_path):
    g = random_gaussians(500)
    path = save_splat(tmp_path / "sub" / "a.splat", g)
    raw = path.read_bytes()
    assert len(raw) == 32 * 500
    rec = np.frombuffer(raw, dtype=[("pos", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])
    # find each record's source Gaussian by its (unique, exactly stored) position
    source = {tuple(p): i for i, p in enumerate(g.means.tolist())}
    index = torch.tensor([source[tuple(p)] for p in rec["pos"].tolist()])
    assert sorted(index.tolist()) == list(range(500))
    key = g.scales[index].double().prod(dim=1) * g.opacities[index].double()
    assert (key[1:] <= key[:-1]).all()
    order = torch.argsort(-(g.scales.double().prod(dim=1) * g.opacities.double()), stable=True)
    np.testing.assert_array_equal(rec["pos"], g.means[order].numpy())

    back = load_splat(path)
    s = g.select(order)
    assert torch.equal(back.means, s.means) and torch.equal(back.scales, s.scales)
    torch.testing.assert_close(back.colors, s.colors, rtol=0, atol=0.5 / 255 + 1e-6)
    torch.testing.assert_close(back.opacities, s.opacities, rtol=0, atol=0.5 / 255 + 1e-6)
    assert (torch.sum(back.quats * s.quats, dim=1) > 0.9999).all()  # 8-bit components, same sign

    one = Gaussians(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([[2.0, 0.0, 0.0, 0.0]]),
                    torch.tensor([[0.1, 0.2, 0.3]]), torch.tensor([1.0]), torch.tensor([[1.0, 0.0, 0.5]]))
    raw = save_splat(tmp_path / "one.splat", one).read_bytes()
    assert np.frombuffer(raw[:24], "<f4").tolist() == pytest.approx([1, 2, 3, 0.1, 0.2, 0.3])
    assert list(raw[24:]) == [255, 0, 128, 255, 255, 128, 128, 128]  # w = 1 -> 256, clipped


def test_splat_errors(tmp_path):
    (tmp_path / "bad.splat").write_bytes(b"\0" * 33)
    with pytest.raises(ValueError, match="bad.splat.*multiple of 32"):
        load_splat(tmp_path / "bad.splat")
    g = random_gaussians(3)
    with pytest.raises(ValueError, match="zero quaternion"):
        save_splat(tmp_path / "z.splat", g.replace(quats=torch.zeros(3, 4)))
    with pytest.raises(ValueError, match="unbatched"):
        batched = Gaussians(*(t[None] for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
        save_splat(tmp_path / "b.splat", batched)


# ----------------------------------------------------------------------------- video

def smooth_frames(f: int = 12, h: int = 63, w: int = 81) -> np.ndarray:
    t, y, x = np.meshgrid(np.arange(f), np.linspace(0, 1, h), np.linspace(0, 1, w), indexing="ij")
    return np.stack([x, y, 0.5 + 0.4 * np.sin(2 * np.pi * (x + y + t / f))], axis=-1).astype(np.float32)


def test_video_mp4_is_h264_yuv420p_and_close(tmp_path):
    frames = smooth_frames()
    path = save_video(tmp_path / "out" / "v.mp4", torch.from_numpy(frames), fps=24)
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    decoded = np.stack([np.frombuffer(b, np.uint8).reshape(64, 82, 3) for b in reader])
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p(tv, bt709")
    assert meta["size"] == (82, 64) and meta["fps"] == 24  # odd 81x63 padded to even
    assert imageio_ffmpeg.count_frames_and_secs(str(path)) == (12, 0.5)
    assert len(decoded) == 12
    err = np.abs(decoded[:, :63, :81] / 255.0 - frames)
    assert err.mean() < 4 / 255
    # the padding repeats the edge
    assert np.abs(decoded[:, 63].astype(int) - decoded[:, 62]).mean() < 3
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # +faststart: index before the media data


def test_video_accepts_uint8_and_lists(tmp_path):
    frames = (smooth_frames(3, 32, 48) * 255).round().astype(np.uint8)
    path = save_video(tmp_path / "u.mp4", list(frames), fps=10)
    assert imageio_ffmpeg.count_frames_and_secs(str(path))[0] == 3


@pytest.mark.parametrize("frames, message", [
    (np.zeros((2, 16, 16)), "shape"),
    (np.zeros((2, 16, 16, 4)), "shape"),
    (np.zeros((0, 16, 16, 3)), "shape"),
    ([], "no frames"),
    ([np.zeros((16, 16, 3)), np.zeros((16, 18, 3))], "differ"),
    (np.full((2, 16, 16, 3), np.nan), "NaN"),
    (np.zeros((2, 16, 16, 3), dtype=np.int16), "dtype"),
])
def test_video_rejects_bad_frames(tmp_path, frames, message):
    with pytest.raises(ValueError, match=message):
        save_video(tmp_path / "x.mp4", frames)
    with pytest.raises(ValueError, match=message):
        save_frames(tmp_path / "pngs", frames)
    with pytest.raises(ValueError, match=message):
        save_preview(tmp_path / "x.gif", frames)


def test_video_rejects_bad_fps(tmp_path):
    for fps in (0, -1, float("nan")):
        with pytest.raises(ValueError, match="fps"):
            save_video(tmp_path / "x.mp4", np.zeros((1, 16, 16, 3), np.uint8), fps=fps)


def test_save_frames_pngs_are_lossless(tmp_path):
    frames = (smooth_frames(3, 21, 30) * 255).round().astype(np.uint8)
    paths = save_frames(tmp_path / "pngs", frames)
    assert [p.name for p in paths] == ["frame_00000.png", "frame_00001.png", "frame_00002.png"]
    for frame, path in zip(frames, paths):
        np.testing.assert_array_equal(np.asarray(Image.open(path).convert("RGB")), frame)


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_preview_is_small_and_animated(tmp_path, suffix):
    frames = smooth_frames(6, 300, 400)
    path = save_preview(tmp_path / "p" / f"preview{suffix}", frames, fps=10)
    with Image.open(path) as im:
        assert im.size == (256, 192)
        assert im.n_frames == 6 and im.is_animated
        im.load()  # WebP reports the frame duration only once a frame is decoded
        assert im.info["duration"] == 100
        assert im.info.get("loop") == 0
    small = save_preview(tmp_path / f"small{suffix}", frames[:, :50, :60])
    assert Image.open(small).size == (60, 50)  # never upscaled


def test_preview_rejects_unknown_extension(tmp_path):
    with pytest.raises(ValueError, match="gif or .webp"):
        save_preview(tmp_path / "p.mp4", smooth_frames(2, 8, 8))


def test_ply_dc_only_read_as_sh(tmp_path):
    g = random_gaussians(20)
    back = load_ply(save_ply(tmp_path / "dc.ply", g), sh=True)
    assert back.colors.shape == (20, 1, 3) and back.sh_degree == 0
    torch.testing.assert_close(back.colors[:, 0] * SH_C0 + 0.5, g.colors, atol=1e-6, rtol=0)
