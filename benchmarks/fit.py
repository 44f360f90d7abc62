"""Body fitting: time, silhouette IoU and leg depth error of ``fit_body`` on synthetic people (the free body rendered).

Run: python benchmarks/fit.py  (prints a markdown table: per-case wall and CPU time after a warm-up
fit, IoU, the largest depth error of the knees, ankles and feet relative to the pelvis, means). The fit runs on one thread, so CPU time is what it takes on an unloaded core.
The people come from tests/test_fit.py: dense Gaussians on the posed free body, 720x540 photo,
40 degree camera 3 m away, cropped with ``crop_person`` (640x384).
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_fit import synthetic_person, synthetic_pose

import lhm
from lhm.body import skeleton
from lhm.preprocess.crop import crop_person
from lhm.preprocess.fit import fit_body
from results import cpu_model

LEGS = [skeleton.JOINT_INDEX[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot",
                                          "right_foot")]

CASES = {  # name -> synthetic_person keywords
    "arms_down": {},
    "arm_raised": {},
    "walking": {"betas": [0.5, -0.5]},
    "turned": {"distance": 3.6},
    "wide": {},
}


def leg_depth_error(body: lhm.Body, fit, name: str, betas) -> float:
    """Largest camera-depth error (metres) of the fitted legs' joints relative to the pelvis, root rotation aside:
    what a single silhouette cannot see, and what side views show as a lean."""
    def depth(pose, b):
        pose = pose.clone()
        pose[0] = 0.0
        joints = body.pose(pose, b).joints
        return (joints - joints[0])[LEGS, 2]
    truth = depth(synthetic_pose(name), None if betas is None else torch.tensor(betas, dtype=torch.float32))
    return float((depth(fit.full_pose, fit.betas) - truth).abs().max())


def main() -> None:
    body = lhm.load_body("free")
    crops = {name: crop_person(*synthetic_person(body, name, **kw)[:2]) for name, kw in CASES.items()}
    fit_body(crops["arms_down"], body)  # warm-up: numba compile / cache load
    print(f"`python benchmarks/fit.py`, {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores (`nproc`), "
          f"{cpu_model()}, torch {torch.__version__}, numba {numba.__version__}; "
          f"5-minute load average {os.getloadavg()[1]:.1f}.\n")
    print("| case | wall time | CPU time | IoU | leg depth error |\n| --- | --- | --- | --- | --- |")
    rows = []
    for name, crop in crops.items():
        t, c = time.perf_counter(), time.process_time()
        fit = fit_body(crop, body)
        rows.append((time.perf_counter() - t, time.process_time() - c, fit.iou,
                     leg_depth_error(body, fit, name, CASES[name].get("betas"))))
        print(f"| {name} | {rows[-1][0]:.2f} s | {rows[-1][1]:.2f} s | {fit.iou:.3f} | {100 * rows[-1][3]:.0f} cm |")
    wall, cpu, iou, depth = (sum(col) / len(rows) for col in zip(*rows))
    print(f"| **mean** | **{wall:.2f} s** | **{cpu:.2f} s** | **{iou:.3f}** | **{100 * depth:.0f} cm** |")


if __name__ == "__main__":
    main()
