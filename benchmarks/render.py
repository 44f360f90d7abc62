"""Benchmark of the CPU Gaussian rasterizer on an LHM-like avatar (run: python benchmarks/render.py).

Scene: 40,000 Gaussians on the surface of a standing body ~1.7 m tall (``lhm/assets/free_body.npz``
when present, else a procedural body of ellipsoids), oriented along the surface, tangent scales
log-normal around 6 mm clipped to 2-50 mm, thin along the normal; camera 2.5 m away, 512x512.
Measures first-call numba compile time (cold cache, in a child process), forward fps, forward +
backward time, a vectorised pure-PyTorch pair-list renderer on the same scene (speed-up), and the
peak RSS of 100,000 Gaussians at 1024x1024 (child process); writes "## Rendering" in RESULTS.md.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import torch  # noqa: E402

from lhm.gaussians import Gaussians  # noqa: E402
from lhm.geometry import matrix_to_quaternion  # noqa: E402
from lhm.render import Camera, cpu, render  # noqa: E402
from results import cpu_model, write_section  # noqa: E402

MESH = ROOT / "lhm" / "assets" / "free_body.npz"


# ---------------------------------------------------------------------------------------------
# scene
# ---------------------------------------------------------------------------------------------

def _mesh_surface(n: int, gen: torch.Generator):
    import numpy as np
    data = np.load(MESH)
    v = torch.as_tensor(data["vertices"], dtype=torch.float32)
    f = torch.as_tensor(data["faces"], dtype=torch.long)
    a, b, c = v[f[:, 0]], v[f[:, 1]], v[f[:, 2]]
    cross = torch.cross(b - a, c - a, dim=-1)
    face = torch.multinomial(cross.norm(dim=-1), n, replacement=True, generator=gen)
    r1, r2 = torch.rand(n, 1, generator=gen).sqrt(), torch.rand(n, 1, generator=gen)
    pts = (1 - r1) * a[face] + r1 * (1 - r2) * b[face] + r1 * r2 * c[face]
    return pts, torch.nn.functional.normalize(cross[face], dim=-1)


# (centre, radii) of the ellipsoids of a standing person, feet at y = 0, facing +z
_BODY = [((0.0, 1.58, 0.0), (0.09, 0.12, 0.10)),  # head
         ((0.0, 1.45, 0.0), (0.05, 0.06, 0.05)),  # neck
         ((0.0, 1.18, 0.0), (0.17, 0.25, 0.11)),  # chest
         ((0.0, 0.92, 0.0), (0.15, 0.14, 0.10)),  # hips
         ((-0.25, 1.12, 0.0), (0.05, 0.28, 0.05)), ((0.25, 1.12, 0.0), (0.05, 0.28, 0.05)),  # arms
         ((-0.09, 0.45, 0.0), (0.07, 0.42, 0.07)), ((0.09, 0.45, 0.0), (0.07, 0.42, 0.07)),  # legs
         ((-0.09, 0.03, 0.05), (0.05, 0.03, 0.11)), ((0.09, 0.03, 0.05), (0.05, 0.03, 0.11))]  # feet


def _procedural_surface(n: int, gen: torch.Generator):
    centre = torch.tensor([c for c, _ in _BODY])
    radii = torch.tensor([r for _, r in _BODY])
    # Knud Thomsen's approximation of the ellipsoid area, to spread points evenly
    p = 1.6075
    ab, bc, ca = ((radii[:, i] * radii[:, j]) ** p for i, j in ((0, 1), (1, 2), (2, 0)))
    area = 4 * math.pi * ((ab + bc + ca) / 3) ** (1 / p)
    part = torch.multinomial(area, n, replacement=True, generator=gen)
    d = torch.nn.functional.normalize(torch.randn(n, 3, generator=gen), dim=-1)
    pts = centre[part] + d * radii[part]
    return pts, torch.nn.functional.normalize(d / radii[part], dim=-1)


def avatar(n: int, seed: int = 0) -> tuple[Gaussians, str]:
    """n surface-aligned Gaussians on a standing body, and the name of the body used."""
    gen = torch.Generator().manual_seed(seed)
    pts, normal = (_mesh_surface if MESH.exists() else _procedural_surface)(n, gen)
    t1 = torch.nn.functional.normalize(torch.cross(normal, torch.randn(n, 3, generator=gen), dim=-1), dim=-1)
    frame = torch.stack([t1, torch.cross(normal, t1, dim=-1), normal], dim=-1)
    tangent = (0.006 * torch.exp(0.5 * torch.randn(n, 2, generator=gen))).clamp(0.002, 0.05)
    scales = torch.cat([tangent, (0.3 * tangent[:, :1]).clamp_min(0.002)], dim=-1)
    colors = (torch.tensor([0.8, 0.6, 0.5]) + 0.2 * torch.randn(n, 3, generator=gen)).clamp(0, 1)
    opacities = 0.7 + 0.3 * torch.rand(n, generator=gen)
    name = "lhm/assets/free_body.npz" if MESH.exists() else "procedural ellipsoid body"
    return Gaussians(pts, matrix_to_quaternion(frame), scales, opacities, colors), name


def view(g: Gaussians, size: int) -> Camera:
    """Front camera 2.5 m from the middle of the body."""
    centre = (g.means.amax(0) + g.means.amin(0)) / 2
    return Camera.look_at(centre + torch.tensor([0.0, 0.0, 2.5]), centre, size, size, fov_y_deg=40.0)


# ---------------------------------------------------------------------------------------------
# the pure-PyTorch baseline: (pixel, Gaussian) pairs within 16x16 tiles, padded per tile
# ---------------------------------------------------------------------------------------------

@torch.no_grad()
def torch_pairlist_render(g: Gaussians, cam: Camera, background: torch.Tensor, max_elems: int = 1 << 24):
    """Same image formation as lhm.render, vectorised over tile pixels x tile Gaussians."""
    width, height, tile = cam.width, cam.height, cpu.TILE
    means2d, conics, depths, valid = cpu.project(g.means[None], g.quats[None], g.scales[None], g.opacities[None],
                                                 cam.viewmat[None], cam.K[None], width, height)
    means2d, conics, depths, valid = means2d[0], conics[0], depths[0], valid[0]
    # opacity-aware extent: the ellipse where alpha >= 1/255
    t = torch.log(g.opacities.clamp_min(cpu.ALPHA_MIN) / cpu.ALPHA_MIN)
    det = conics[:, 0] * conics[:, 2] - conics[:, 1] ** 2
    ext = torch.stack([torch.sqrt(2 * t * conics[:, 2] / det), torch.sqrt(2 * t * conics[:, 0] / det)], -1) + 0.01
    lo = torch.ceil(means2d - ext - 0.5).clamp_min(0).long() // tile
    hi = torch.floor(means2d + ext - 0.5).long()
    hi = torch.minimum(hi, torch.tensor([width - 1, height - 1])) // tile
    tiles_x, tiles_y = (width + tile - 1) // tile, (height + tile - 1) // tile
    keep = valid & (hi >= lo).all(-1)
    ids = torch.nonzero(keep)[:, 0]
    nx, ny = (hi - lo + 1)[ids].unbind(-1)
    # expand every Gaussian into its tiles, then order pairs by (tile, depth)
    gid = torch.repeat_interleave(ids, nx * ny)
    local = torch.arange(len(gid)) - torch.repeat_interleave(torch.cumsum(nx * ny, 0) - nx * ny, nx * ny)
    nxr = torch.repeat_interleave(nx, nx * ny)
    tid = (lo[gid, 1] + local // nxr) * tiles_x + lo[gid, 0] + local % nxr
    rank = torch.empty_like(depths, dtype=torch.long)
    rank[torch.argsort(depths, stable=True)] = torch.arange(len(depths))  # ties by index, like lhm.render
    order = torch.argsort(tid * len(depths) + rank[gid])
    tid, gid = tid[order], gid[order]
    counts = torch.bincount(tid, minlength=tiles_x * tiles_y)
    starts = torch.cumsum(counts, 0) - counts
    feats = torch.cat([g.colors, depths[:, None]], -1)
    out = torch.zeros(tiles_y * tiles_x, tile * tile, 4)
    T_out = torch.ones(tiles_y * tiles_x, tile * tile)
    py, px = torch.meshgrid(torch.arange(tile) + 0.5, torch.arange(tile) + 0.5, indexing="ij")
    pix = torch.stack([px.reshape(-1), py.reshape(-1)], -1)  # [256,2] within a tile
    busy = torch.nonzero(counts)[:, 0]
    busy_counts = counts[busy].tolist()
    i = 0
    while i < len(busy):
        # a chunk of tiles padded to its longest list, within the element budget
        j, K = i + 1, busy_counts[i]
        while j < len(busy) and (j + 1 - i) * tile * tile * max(K, busy_counts[j]) <= max_elems:
            K = max(K, busy_counts[j])
            j += 1
        tiles = busy[i:j]
        slot = starts[tiles, None] + torch.arange(K)
        present = torch.arange(K) < counts[tiles, None]
        gi = gid[slot.clamp_max(len(gid) - 1)]
        origin = torch.stack([tiles % tiles_x, tiles // tiles_x], -1) * tile
        d = means2d[gi][:, None] - (origin[:, None, None] + pix[None, :, None])  # [T,256,K,2]
        con = conics[gi][:, None]
        dx, dy = d.unbind(-1)
        power = 0.5 * (con[..., 0] * dx * dx + con[..., 2] * dy * dy) + con[..., 1] * dx * dy
        alpha = torch.clamp_max(g.opacities[gi][:, None] * torch.exp(-power), cpu.ALPHA_MAX)
        alpha = torch.where(present[:, None] & (power >= 0) & (alpha >= cpu.ALPHA_MIN), alpha, 0.0)
        T_after = torch.cumprod(1 - alpha, -1)
        used = T_after > cpu.T_MIN  # monotone, so this is the exclusive early stop
        T_before = torch.cat([torch.ones_like(T_after[..., :1]), T_after[..., :-1]], -1)
        w = torch.where(used, alpha * T_before, 0.0)
        out[tiles] = torch.einsum("tpk,tkc->tpc", w, feats[gi])
        T_out[tiles] = torch.where(used, T_after, T_before.new_ones(())).amin(-1)
        i = j
    out = out.reshape(tiles_y, tiles_x, tile, tile, 4).permute(0, 2, 1, 3, 4).reshape(tiles_y * tile, tiles_x * tile, 4)
    T_img = T_out.reshape(tiles_y, tiles_x, tile, tile).permute(0, 2, 1, 3).reshape(tiles_y * tile, tiles_x * tile)
    out, T_img = out[:height, :width], T_img[:height, :width]
    return out[..., :3] + T_img[..., None] * background, 1 - T_img


# ---------------------------------------------------------------------------------------------
# measurements
# ---------------------------------------------------------------------------------------------

def _timeit(fn, repeat: int) -> float:
    """Median wall time in ms over ``repeat`` runs after one warm-up."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def first_call() -> dict:
    """Child process: the first forward and backward in a process (compile, or load the cache)."""
    g, _ = avatar(2000)
    g = Gaussians(*(t.requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
    t0 = time.perf_counter()
    out = render(g, view(g, 64))
    t1 = time.perf_counter()
    out.rgb.sum().backward()
    t2 = time.perf_counter()
    return {"forward_s": t1 - t0, "backward_s": t2 - t1}


def _peak_rss_mb() -> float:
    # VmHWM belongs to this process image; ru_maxrss would carry the parent's peak across fork/exec
    status = Path("/proc/self/status")
    if status.exists():
        return int(re.search(r"VmHWM:\s*(\d+)", status.read_text()).group(1)) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory(n: int, size: int) -> dict:
    """Child process: forward + backward of n Gaussians at size x size; peak RSS before and after."""
    g, _ = avatar(n, seed=1)
    g = Gaussians(*(t.requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
    render(g, view(g, 64)).rgb.sum().backward()  # load the compiled kernels first
    before = _peak_rss_mb()
    cam = view(g, size)
    t0 = time.perf_counter()
    out = render(g, cam)
    t1 = time.perf_counter()
    (out.rgb.mean() + out.alpha.mean()).backward()
    t2 = time.perf_counter()
    return {"forward_ms": 1000 * (t1 - t0), "backward_ms": 1000 * (t2 - t1), "rss_before_mb": before,
            "peak_rss_mb": _peak_rss_mb()}


def _child(part: str, env: dict | None = None) -> dict:
    """Run one measurement in a fresh process (own numba cache state and memory peak)."""
    res = subprocess.run([sys.executable, __file__, "--child", part], capture_output=True, text=True,
                         env={**os.environ, **(env or {})}, check=True)
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    with tempfile.TemporaryDirectory() as cache:
        cold = _child("first_call", {"NUMBA_CACHE_DIR": cache})
        warm = _child("first_call", {"NUMBA_CACHE_DIR": cache})
    compile_s = cold["forward_s"] + cold["backward_s"] - warm["forward_s"] - warm["backward_s"]
    print(f"numba first call (cold cache): forward {cold['forward_s']:.1f} s, backward {cold['backward_s']:.1f} s "
          f"-> compile ~{compile_s:.1f} s; cached load {warm['forward_s'] + warm['backward_s']:.2f} s")

    g, body = avatar(40_000)
    cam = view(g, 512)
    bg = torch.ones(3)
    with torch.no_grad():
        fwd_ms = _timeit(lambda: render(g, cam, background=bg), 30)
        out = render(g, cam, background=bg)
    gg = Gaussians(*(t.clone().requires_grad_(True) for t in (g.means, g.quats, g.scales, g.opacities, g.colors)))
    fwd_bwd_ms = _timeit(lambda: render(gg, cam, background=bg).rgb.mean().backward(), 10)
    base_ms = _timeit(lambda: torch_pairlist_render(g, cam, bg), 3)
    base_rgb, base_alpha = torch_pairlist_render(g, cam, bg)
    diff = max((base_rgb - out.rgb).abs().max().item(), (base_alpha - out.alpha[..., 0]).abs().max().item())
    coverage = (out.alpha > 0.5).float().mean().item()
    print(f"scene: 40,000 Gaussians ({body}), 512x512, covering {100 * coverage:.0f}% of the pixels")
    print(f"forward: {fwd_ms:.1f} ms = {1000 / fwd_ms:.1f} fps; forward+backward: {fwd_bwd_ms:.1f} ms")
    print(f"pure-PyTorch pair-list renderer: {base_ms:.0f} ms (max abs diff {diff:.1e}); "
          f"speed-up x{base_ms / fwd_ms:.0f}")
    mem = _child("memory")
    print(f"100,000 Gaussians at 1024x1024: forward {mem['forward_ms']:.0f} ms, backward {mem['backward_ms']:.0f} ms, "
          f"peak RSS {mem['peak_rss_mb']:.0f} MB ({mem['rss_before_mb']:.0f} MB before rendering)")

    section = "\n".join([
        "## Rendering",
        "",
        f"`python benchmarks/render.py`, {datetime.date.today().isoformat()}: {len(os.sched_getaffinity(0))} cores "
        f"(`nproc`), {cpu_model()}, torch {torch.__version__}, "
        f"numba {numba.__version__}, threads: torch {torch.get_num_threads()} / numba {numba.get_num_threads()}.",
        "",
        f"Scene: 40,000 LHM-like Gaussians ({body}; tangent scales 2-50 mm, median 6 mm), "
        f"camera 2.5 m away, 512x512, {100 * coverage:.0f}% of pixels covered.",
        "",
        "| measurement | value |",
        "| --- | --- |",
        f"| forward (CPU numba, median of 30) | {fwd_ms:.1f} ms ({1000 / fwd_ms:.1f} fps) |",
        f"| forward + backward (median of 10) | {fwd_bwd_ms:.1f} ms |",
        f"| pure-PyTorch pair-list forward | {base_ms:.0f} ms (x{base_ms / fwd_ms:.0f} slower) |",
        f"| 100,000 Gaussians at 1024x1024, forward + backward | "
        f"{mem['forward_ms']:.0f} + {mem['backward_ms']:.0f} ms, "
        f"peak RSS {mem['peak_rss_mb']:.0f} MB ({mem['rss_before_mb']:.0f} MB before rendering) |",
        f"| numba compile, first call on a machine (cached afterwards) | {compile_s:.1f} s |",
        "",
    ])
    print(f"wrote {write_section(section)}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=["first_call", "memory"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "first_call":
        print(json.dumps(first_call()))
    elif args.child == "memory":
        print(json.dumps(memory(100_000, 1024)))
    else:
        main()
