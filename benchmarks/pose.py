"""Posing speed: 40,000 Gaussians on the free body, LBS with Gaussian rotations, on this CPU.

Run: python benchmarks/pose.py  (ms per frame for single frames and a batch of 30, with the fused CPU
kernel and with the plain torch reference, measured in the same run; wall and process CPU time).
"""
from __future__ import annotations

import os
import time

import lhm  # first: its OpenMP wait policy must be set before torch loads
import lhm.avatar
import numba
import torch
from lhm.body.canonical import CanonicalSpace, sample_surface
from lhm.skinning import skin_gaussians_torch
from results import cpu_model


def _avatar(n: int) -> lhm.Avatar:
    body = lhm.load_body("free")
    space = CanonicalSpace.from_samples(body, sample_surface(body, n))
    quats = torch.nn.functional.normalize(torch.randn(n, 4), dim=-1)
    g = lhm.Gaussians(space.points, quats, torch.full((n, 3), 0.01), torch.full((n,), 0.9), torch.rand(n, 3))
    return lhm.Avatar.from_canonical(space, body, g)


def _median_ms(fn, repeats: int) -> tuple[float, float]:
    """Median wall and process-CPU milliseconds of ``fn`` (CPU time is steadier on a shared machine)."""
    fn()  # warm-up (and numba compile)
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return 1000 * sorted(wall)[len(wall) // 2], 1000 * sorted(cpu)[len(cpu) // 2]


def main() -> None:
    """Print posing figures for 40k Gaussians."""
    torch.manual_seed(0)
    avatar = _avatar(40_000)
    motion = lhm.Motion.from_full_pose(torch.randn(30, 55, 3) * 0.3, torch.randn(30, 3) * 0.1)
    with torch.no_grad():
        one = _median_ms(lambda: avatar.pose(motion, [0]), 21)
        batch = _median_ms(lambda: avatar.pose(motion), 7)
        lhm.avatar.skin_gaussians = skin_gaussians_torch  # the plain reference, same run
        ref_one = _median_ms(lambda: avatar.pose(motion, [0]), 7)
        ref_batch = _median_ms(lambda: avatar.pose(motion), 3)
    print(f"machine: {cpu_model()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads, numba {numba.get_num_threads()} threads, torch {torch.__version__}")
    for label, (k_wall, k_cpu), (r_wall, r_cpu), frames in (("1 frame", one, ref_one, 1),
                                                          ("30 frames", batch, ref_batch, 30)):
        print(f"pose 40,000 Gaussians, {label:9s}: kernel {k_wall / frames:6.2f} ms/frame wall "
              f"({k_cpu / frames:6.2f} CPU), torch reference {r_wall / frames:7.2f} ms/frame wall "
              f"({r_cpu / frames:7.2f} CPU): {r_wall / k_wall:.1f}x")

if __name__ == "__main__":
    main()
