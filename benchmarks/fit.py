"""Body fitting: time and silhouette IoU of ``fit_body`` on synthetic people (the free body rendered).

Run: python benchmarks/fit.py  (prints a markdown table: per-case wall and CPU time after a warm-up
fit, IoU, means). The fit runs on one thread, so CPU time is what it takes on an unloaded core.
The people come from tests/test_fit.py: dense Gaussians on the posed free body, 720x540 photo,
40 degree camera 3 m away, cropped with ``crop_person`` (640x384).
"""
from __future__ import annotations

import os
import platform
import sys
import time
from pathlib import Path

import numba
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from test_fit import synthetic_person

import lhm
from lhm.preprocess.crop import crop_person
from lhm.preprocess.fit import fit_body

CASES = {  # name -> synthetic_person keywords
    "arms_down": {},
    "arm_raised": {},
    "walking": {"betas": [0.5, -0.5]},
    "turned": {"distance": 3.6},
    "wide": {},
}


def main() -> None:
    body = lhm.load_body("free")
    crops = {name: crop_person(*synthetic_person(body, name, **kw)[:2]) for name, kw in CASES.items()}
    fit_body(crops["arms_down"], body)  # warm-up: numba compile / cache load
    print(f"`python benchmarks/fit.py`, {time.strftime('%Y-%m-%d')}: {os.cpu_count()} cores (`nproc`), "
          f"{platform.processor() or platform.machine()}, torch {torch.__version__}, numba {numba.__version__}; "
          f"5-minute load average {os.getloadavg()[1]:.1f}.\n")
    print("| case | wall time | CPU time | IoU |\n| --- | --- | --- | --- |")
    rows = []
    for name, crop in crops.items():
        t, c = time.perf_counter(), time.process_time()
        fit = fit_body(crop, body)
        rows.append((time.perf_counter() - t, time.process_time() - c, fit.iou))
        print(f"| {name} | {rows[-1][0]:.2f} s | {rows[-1][1]:.2f} s | {fit.iou:.3f} |")
    wall, cpu, iou = (sum(col) / len(rows) for col in zip(*rows))
    print(f"| **mean** | **{wall:.2f} s** | **{cpu:.2f} s** | **{iou:.3f}** |")


if __name__ == "__main__":
    main()
