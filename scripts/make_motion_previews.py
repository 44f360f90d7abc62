"""Render the motion presets' preview animations (lhm/motion/previews/<name>.webp) from the free body.

A shaded mannequin: Gaussians sampled on the free body (``sample_surface`` + ``CanonicalSpace`` +
``Avatar.from_canonical``), flattened onto the surface so each carries its normal, posed through
the motion, lit per frame by a fixed light and drawn with ``lhm.render.render`` through the
default motion camera (turned to a three-quarter view). ``--sheet`` also writes a contact sheet
(a few frames of each preset, front and side) for looking at the motions.

    python scripts/make_motion_previews.py [--size 128] [--fps 15] [--sheet sheet.png] [names...]

(with the package installed, e.g. ``pip install -e .``; ~2 minutes on 2 CPU cores)
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import lhm
from lhm.body.canonical import CanonicalSpace, sample_surface
from lhm.geometry import quaternion_to_matrix
from lhm.io import save_preview
from lhm.motion import load_motion, motion_camera
from lhm.motion.presets import PREVIEW_DIR, PRESETS
from lhm.render import render

LIGHT = torch.nn.functional.normalize(torch.tensor([0.4, 0.7, 0.6]), dim=0)  # from front-left-above
VIEW = (0.45, 0.12, 1.0)  # previews look from the front, a little from the left and above: steps read better
ALBEDO = torch.tensor([0.72, 0.74, 0.78])
BACKGROUND = 1.0


def mannequin(body: lhm.Body, n: int = 12000) -> lhm.Avatar:
    """Flat Gaussians on the body surface whose local z axis is the surface normal."""
    import trimesh

    samples = sample_surface(body, n)
    space = CanonicalSpace.from_samples(body, samples)
    mesh = trimesh.Trimesh(body.vertices.numpy(), body.faces.numpy(), process=False)
    normals = torch.from_numpy(np.asarray(mesh.vertex_normals, dtype=np.float32))[samples.vertex_index]
    # canonical normals: the samples' rest normals carried into the big pose by their skinning
    T = torch.einsum("nj,jab->nab", space.weights, torch.linalg.inv(space.neutral_transforms))
    normals = torch.nn.functional.normalize((T[:, :3, :3] @ normals[..., None])[..., 0], dim=-1)
    quats = _quat_from_z(normals)
    spacing = float((body.vertices.amax(0) - body.vertices.amin(0)).prod() ** (1 / 3)) / n ** 0.5
    scales = torch.tensor([1.0, 1.0, 0.15]) * 1.3 * spacing
    g = lhm.Gaussians(space.points.clone(), quats, scales.expand(n, 3).clone(), torch.full((n,), 0.98),
                      ALBEDO.expand(n, 3).clone())
    return lhm.Avatar.from_canonical(space, body, g)


def _quat_from_z(z: torch.Tensor) -> torch.Tensor:
    """Unit quaternions [N,4] turning +z onto the unit vectors ``z`` [N,3] (shortest arc)."""
    w = 1.0 + z[:, 2]
    q = torch.stack([w, -z[:, 1], z[:, 0], torch.zeros_like(w)], dim=-1)
    flip = w < 1e-6  # z = -z: any half turn about an axis in the plane
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0])
    return torch.nn.functional.normalize(q, dim=-1)


def shaded_frames(avatar: lhm.Avatar, motion: lhm.Motion, cameras: lhm.Camera, frames) -> torch.Tensor:
    """Rendered RGB [len(frames),H,W,3] with Lambert shading by the posed Gaussian normals."""
    out = []
    for f in frames:
        g = avatar.pose(motion, [f]).frame(0)
        normal = quaternion_to_matrix(g.quats)[:, :, 2]
        # a disc seen from behind lights like its front: fold normals towards the camera
        to_cam = cameras[f].center - g.means
        normal = torch.where(((normal * to_cam).sum(-1, keepdim=True) < 0), -normal, normal)
        light = 0.35 + 0.65 * (normal @ LIGHT).clamp_min(0)
        out.append(render(g.replace(colors=(g.colors * light[:, None]).clamp(0, 1)), cameras[f], background=BACKGROUND).rgb)
    return torch.stack(out)


def contact_sheet(avatar: lhm.Avatar, names: list[str], path: Path, columns: int = 8, size: int = 192) -> None:
    """Front and side views of ``columns`` frames per preset, one pair of rows per preset."""
    from PIL import Image

    rows = []
    for name in names:
        m = load_motion(name)
        picks = np.linspace(0, len(m) - 1, columns).round().astype(int).tolist()
        for direction in ("front", "left"):
            cams = motion_camera(m, avatar.body, "auto", size, size, direction=direction)
            img = shaded_frames(avatar, m, cams, picks)
            rows.append(np.concatenate(list((img.clamp(0, 1).numpy() * 255).astype(np.uint8)), axis=1))
    Image.fromarray(np.concatenate(rows)).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="presets to render (default: all)")
    parser.add_argument("--size", type=int, default=128, help="preview width and height in pixels")
    parser.add_argument("--fps", type=float, default=15.0, help="preview frame rate")
    parser.add_argument("--out", type=Path, default=PREVIEW_DIR, help="output folder")
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet PNG here")
    args = parser.parse_args()
    names = args.names or list(PRESETS)
    body = lhm.load_body("free")
    avatar = mannequin(body)
    for name in names:
        m = load_motion(name)
        cams = motion_camera(m, body, "auto", width=args.size, height=args.size, direction=VIEW)
        frames = range(0, len(m), max(1, round(m.fps / args.fps)))
        rgb = shaded_frames(avatar, m, cams, frames)
        path = save_preview(args.out / f"{name}.webp", rgb, fps=m.fps / frames.step, max_size=args.size)
        print(f"{path} ({path.stat().st_size // 1024} KiB, {len(frames)} frames)")
    if args.sheet:
        contact_sheet(avatar, names, args.sheet)
        print(args.sheet)


if __name__ == "__main__":
    main()
