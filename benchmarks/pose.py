"""Posing speed: 40,000 Gaussians on the free body, LBS with Gaussian rotations, on this CPU.

Run: python benchmarks/pose.py  (prints ms per frame for single frames and for a batch of 30).
"""
from __future__ import annotations

import platform
import time

import torch

import lhm
from lhm.body.canonical import CanonicalSpace, sample_surface


def _avatar(n: int) -> lhm.Avatar:
    body = lhm.load_body("free")
    space = CanonicalSpace.from_samples(body, sample_surface(body, n))
    quats = torch.nn.functional.normalize(torch.randn(n, 4), dim=-1)
    g = lhm.Gaussians(space.points, quats, torch.full((n, 3), 0.01), torch.full((n,), 0.9), torch.rand(n, 3))
    return lhm.Avatar.from_canonical(space, body, g)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return 1000 * sorted(times)[len(times) // 2]


def main() -> None:
    """Print posing figures for 40k Gaussians."""
    torch.manual_seed(0)
    avatar = _avatar(40_000)
    motion = lhm.Motion.from_full_pose(torch.randn(30, 55, 3) * 0.3, torch.randn(30, 3) * 0.1)
    with torch.no_grad():
        one = _median_ms(lambda: avatar.pose(motion, [0]), 21)
        batch = _median_ms(lambda: avatar.pose(motion), 7)
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}")
    print(f"pose 40,000 Gaussians, 1 frame:   {one:7.2f} ms/frame (median of 21)")
    print(f"pose 40,000 Gaussians, 30 frames: {batch / 30:7.2f} ms/frame ({batch:.1f} ms per batch, median of 7)")
    print(f"batching speed-up: {one / (batch / 30):.2f}x")


if __name__ == "__main__":
    main()
