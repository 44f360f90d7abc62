"""3D Gaussian Splatting ``.ply`` files, in the layout of the INRIA reference code.

One ``vertex`` element of binary little endian float32 properties, in this order::

    x y z nx ny nz f_dc_0 f_dc_1 f_dc_2 [f_rest_*] opacity scale_0 scale_1 scale_2 rot_0 rot_1 rot_2 rot_3

holding the inverses of the activations: ``opacity`` is a logit, ``scale_*`` natural logs,
``f_dc_*`` the degree-0 SH coefficient ``(rgb - 0.5) / C0`` and ``rot_*`` the quaternion (w, x, y, z).
Normals are zero; ``f_rest_*`` only appear for SH colours.

The header is written here rather than by plyfile so that it stays exactly what gradio's
``gr.Model3D`` needs to draw the file as splats (gradio 6 frontend, ``Model3D-*.js`` and
``Canvas3DGS-*.js``): the file starts with ``ply\\n``; the vertex element holds x, y, z, scale_0-2,
opacity, rot_0-3 and at least three of red/green/blue/f_dc_0-2; there is no face element; and,
for the gsplat.js loader it then uses, every property is a ``float`` of the single element and
the header fits in its first 10 KiB.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import torch
from plyfile import PlyData, PlyParseError

from ..gaussians import Gaussians

SH_C0 = 0.28209479177387814
# logit(0) and logit(1) are infinite; 1e-3 is far below what a viewer can show.
OPACITY_EPS = 1e-3
# log(0) is -inf, which some viewers choke on; 1e-8 m is invisible at any sane zoom.
SCALE_MIN = 1e-8

_REQUIRED = ("x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity",
             "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3")


def save_ply(path: str | os.PathLike, gaussians: Gaussians, *, y_down: bool = False) -> Path:
    """Write one unbatched Gaussian set as a binary 3DGS ``.ply`` and return its path.

    Opacities are clamped to [1e-3, 1 - 1e-3] and scales floored at 1e-8 m so that the stored
    logit and log stay finite; inside those ranges everything round-trips through
    :func:`load_ply` to float32 precision. SH colours [N,K,3] also write ``f_rest_*``
    (the reference code's channel-major order). ``y_down`` writes the set turned half a turn
    about x, upright for viewers that take y as down (gsplat.js, which gradio's ``Model3D`` uses).
    """
    f = numpy_fields(gaussians, "save_ply")
    if y_down:
        f = _half_turn_x(f)
    n, k = f["sh"].shape[:2]
    opacity = np.clip(f["opacities"], OPACITY_EPS, 1.0 - OPACITY_EPS)
    columns = [
        f["means"],
        np.zeros((n, 3)),
        f["sh"][:, 0],
        f["sh"][:, 1:].transpose(0, 2, 1).reshape(n, 3 * (k - 1)),
        np.log(opacity / (1.0 - opacity))[:, None],
        np.log(np.maximum(f["scales"], SCALE_MIN)),
        f["quats"],
    ]
    names = ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
             *(f"f_rest_{i}" for i in range(3 * (k - 1))),
             "opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    header = "".join(["ply\n", "format binary_little_endian 1.0\n", f"element vertex {n}\n",
                      *(f"property float {name}\n" for name in names), "end_header\n"])
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(header.encode("ascii"))
        fh.write(np.concatenate(columns, axis=1).astype("<f4").tobytes())
    return path


def _half_turn_x(f: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``numpy_fields`` turned half a turn about x: (x, y, z) -> (x, -y, -z), quaternions premultiplied by (0, 1, 0, 0).

    SH colours turn with the directions they are evaluated on: the basis function of band l, order m
    flips sign when odd under (y, z) -> (-y, -z), i.e. when l + |m| + (m < 0) is odd.
    """
    w, x, y, z = f["quats"].T
    degree = round(f["sh"].shape[1] ** 0.5) - 1
    sh_signs = np.array([(-1) ** (l + abs(m) + (m < 0)) for l in range(degree + 1) for m in range(-l, l + 1)])
    return {**f, "means": f["means"] * np.array([1.0, -1.0, -1.0]), "quats": np.stack([-x, w, -z, y], axis=1),
            "sh": f["sh"] * sh_signs[:, None]}


def load_ply(path: str | os.PathLike, sh: bool = False) -> Gaussians:
    """Read a 3DGS ``.ply`` (ours or another tool's) into float32 CPU :class:`Gaussians`.

    Any PLY encoding and property order is accepted; normals and unknown properties are
    ignored, quaternions are normalised. Colours are RGB ``f_dc * C0 + 0.5`` clamped to [0, 1],
    or with ``sh=True`` the raw SH coefficients [N,K,3] including ``f_rest_*``.
    Raises ValueError naming the file when it is not a readable 3DGS PLY.
    """
    path = Path(path)
    try:
        ply = PlyData.read(str(path), mmap=False)
    except (PlyParseError, ValueError) as e:  # UnicodeDecodeError is a ValueError too
        raise ValueError(f"{path} is not a readable PLY file: {e}") from e
    if "vertex" not in ply:
        raise ValueError(f"{path} is not a 3DGS .ply: it has no 'vertex' element")
    vertex = ply["vertex"]
    present = {p.name for p in vertex.properties}
    missing = [name for name in _REQUIRED if name not in present]
    if missing:
        raise ValueError(f"{path} is not a 3DGS .ply: its vertex element lacks {', '.join(missing)}")

    def column(*names: str) -> torch.Tensor:
        try:
            values = np.stack([np.asarray(vertex[name], dtype=np.float64) for name in names], axis=-1)
        except (TypeError, ValueError) as e:
            raise ValueError(f"{path}: properties {', '.join(names)} are not numeric scalars") from e
        return torch.from_numpy(values)

    dc = column("f_dc_0", "f_dc_1", "f_dc_2")
    if sh:
        rest_names = sorted((p for p in present if re.fullmatch(r"f_rest_\d+", p)), key=lambda p: int(p[7:]))
        k = len(rest_names) // 3 + 1
        if rest_names != [f"f_rest_{i}" for i in range(3 * (k - 1))] or round(k ** 0.5) ** 2 != k:
            raise ValueError(f"{path}: its {len(rest_names)} f_rest_* properties are not a full set of SH bands")
        colors = dc[:, None]
        if rest_names:  # f_rest is stored channel-major: all coefficients of red, then green, then blue
            colors = torch.cat([colors, column(*rest_names).reshape(-1, 3, k - 1).transpose(1, 2)], dim=1)
    else:
        colors = (dc * SH_C0 + 0.5).clamp(0.0, 1.0)
    g = Gaussians(
        means=column("x", "y", "z"),
        quats=torch.nn.functional.normalize(column("rot_0", "rot_1", "rot_2", "rot_3"), dim=-1),
        scales=column("scale_0", "scale_1", "scale_2").exp(),
        opacities=torch.sigmoid(column("opacity")[:, 0]),
        colors=colors,
    )
    return g.to(torch.float32)


def numpy_fields(gaussians: Gaussians, caller: str) -> dict[str, np.ndarray]:
    """Float64 numpy copies of one unbatched set; colours as SH coefficients ``sh`` [N,K,3].

    RGB colours become the degree-0 coefficient (K = 1). Raises ValueError for a batched set
    or non-finite values, which no file format here can store meaningfully.
    """
    if gaussians.batch_shape:
        raise ValueError(f"{caller} writes one unbatched Gaussian set, got batch shape "
                         f"{tuple(gaussians.batch_shape)}; pick one with .frame(i)")
    f = {name: getattr(gaussians, name).detach().cpu().to(torch.float64).numpy()
         for name in ("means", "quats", "scales", "opacities", "colors")}
    for name, value in f.items():
        if not np.isfinite(value).all():
            raise ValueError(f"{caller}: Gaussians.{name} holds NaN or infinite values")
    colors = f.pop("colors")
    f["sh"] = colors if gaussians.sh_degree is not None else ((colors - 0.5) / SH_C0)[:, None]
    return f
