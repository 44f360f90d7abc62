"""The ``.splat`` format of antimatter15's WebGL viewer (also read by gsplat.js and gradio).

32 bytes a Gaussian, no header: position 3 x float32, scale 3 x float32 (linear, not log),
RGBA 4 x uint8 (colour and opacity times 255) and rotation 4 x uint8, the unit quaternion
(w, x, y, z) mapped to ``q * 128 + 128``. Gaussians are sorted by descending
``scale_0 * scale_1 * scale_2 * opacity`` as that viewer's converter does, so a viewer that
streams the file draws the big opaque ones first.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ..gaussians import Gaussians
from .ply import SH_C0, numpy_fields

SPLAT_DTYPE = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rot", "u1", 4)])


def save_splat(path: str | os.PathLike, gaussians: Gaussians) -> Path:
    """Write one unbatched Gaussian set as a ``.splat`` file and return its path.

    Colours and opacity are clamped to [0, 1] and rounded to 8 bits; SH colours keep only their
    view-independent (degree-0) term. Quaternions are normalised then quantised to 8 bits.
    """
    f = numpy_fields(gaussians, "save_splat")
    norm = np.linalg.norm(f["quats"], axis=1, keepdims=True)
    if (norm == 0).any():
        raise ValueError("save_splat: some Gaussians have a zero quaternion")
    rgba = np.concatenate([f["sh"][:, 0] * SH_C0 + 0.5, f["opacities"][:, None]], axis=1)
    order = np.argsort(-(f["scales"].prod(axis=1) * f["opacities"]), kind="stable")
    records = np.empty(len(order), dtype=SPLAT_DTYPE)
    records["position"] = f["means"][order]
    records["scale"] = f["scales"][order]
    records["rgba"] = np.clip(np.rint(rgba[order] * 255), 0, 255)
    records["rot"] = np.clip(np.rint(f["quats"][order] / norm[order] * 128 + 128), 0, 255)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(records.tobytes())
    return path


def load_splat(path: str | os.PathLike) -> Gaussians:
    """Read a ``.splat`` file into float32 CPU :class:`Gaussians` (RGB colours, file order)."""
    path = Path(path)
    data = path.read_bytes()
    if len(data) % SPLAT_DTYPE.itemsize:
        raise ValueError(f"{path} is not a .splat file: its {len(data)} bytes are not a multiple of "
                         f"{SPLAT_DTYPE.itemsize}")
    records = np.frombuffer(data, dtype=SPLAT_DTYPE)
    rgba = torch.from_numpy(records["rgba"].astype(np.float32) / 255)
    rot = torch.from_numpy((records["rot"].astype(np.float32) - 128) / 128)
    return Gaussians(
        means=torch.from_numpy(records["position"].astype(np.float32)),
        quats=torch.nn.functional.normalize(rot, dim=-1),
        scales=torch.from_numpy(records["scale"].astype(np.float32)),
        opacities=rgba[:, 3].contiguous(),
        colors=rgba[:, :3].contiguous(),
    )
