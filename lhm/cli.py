"""Command line: ``lhm demo`` (the free body as a Gaussian avatar, animated) and ``lhm motions``."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from tqdm import tqdm

from . import Avatar, Gaussians, list_motions, load_body, load_motion, motion_camera, render
from .body.canonical import CanonicalSpace, sample_surface
from .motion import MotionError


def demo_avatar(num_gaussians: int = 40_000, seed: int = 0) -> Avatar:
    """An avatar made of Gaussians on the free body, shaded by body region (no photo, no download)."""
    body = load_body("free")
    samples = sample_surface(body, num_gaussians, seed=seed)
    space = CanonicalSpace.from_samples(body, samples)
    n = len(space)
    skin = torch.tensor([0.80, 0.62, 0.50])
    shirt, trousers = torch.tensor([0.20, 0.35, 0.65]), torch.tensor([0.25, 0.25, 0.28])
    w = space.weights
    legs = w[:, [1, 2, 4, 5, 7, 8, 10, 11]].sum(1, keepdim=True)
    arms_torso = w[:, [3, 6, 9, 13, 14, 16, 17]].sum(1, keepdim=True)
    colors = skin * (1 - legs - arms_torso) + trousers * legs + shirt * arms_torso
    quats = torch.zeros(n, 4)
    quats[:, 0] = 1
    g = Gaussians(space.points, quats, torch.full((n, 3), 0.012), torch.full((n,), 0.95), colors.clamp(0, 1))
    return Avatar.from_canonical(space, body, g)


def _demo(args) -> int:
    from .io import save_ply, save_splat, save_video

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    avatar = demo_avatar()
    motion = load_motion(args.motion)
    cams = motion_camera(motion, avatar, mode="auto", width=args.size, height=args.size)
    frames = []
    with torch.no_grad():
        for i in tqdm(range(len(motion)), desc="render", unit="frame"):
            frames.append(render(avatar.pose(motion, [i]).frame(0), cams[i], background=1.0).rgb)
    save_video(out / "animation.mp4", torch.stack(frames), fps=motion.fps)
    avatar.save_ply(out / "tpose.ply")
    avatar.save_ply(out / "canonical.ply", pose="canonical")
    avatar.save_splat(out / "avatar.splat")
    print(f"wrote {out}/animation.mp4 ({len(motion)} frames), tpose.ply, canonical.ply, avatar.splat "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


def _motions(_args) -> int:
    for info in list_motions():
        print(f"{info.name:20s} {info.display_name:22s} {info.duration:4.1f} s")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lhm`` command; returns the exit code (0 ok, 2 bad input, 1 internal error)."""
    parser = argparse.ArgumentParser(prog="lhm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("demo", help="animate the embedded free body as a Gaussian avatar (no download)")
    d.add_argument("--motion", default="wave", help="preset name or motion file/folder (see `lhm motions`)")
    d.add_argument("--size", type=int, default=512, help="video size in pixels")
    d.add_argument("--out", default="out/demo", help="output folder")
    d.set_defaults(run=_demo)
    sub.add_parser("motions", help="list the preset motions").set_defaults(run=_motions)
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except (MotionError, ValueError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
