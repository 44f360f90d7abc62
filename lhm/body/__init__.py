"""Bodies on the SMPL-X skeleton: the free body (embedded default) and SMPL-X (user files)."""
from __future__ import annotations

import os

from . import skeleton
from .body import Body, PosedBody
from .free import load_free_body
from .smplx_body import SMPLXFilesError, load_smplx_body


def load_body(kind: str = "free", model_dir: str | os.PathLike | None = None, **kwargs) -> Body:
    """Load a body: ``"free"`` (embedded, no files needed) or ``"smplx"`` (from ``model_dir``)."""
    if kind == "free":
        return load_free_body()
    if kind == "smplx":
        return load_smplx_body(model_dir, **kwargs)
    raise ValueError(f"unknown body '{kind}'; choose 'free' or 'smplx'")


__all__ = ["Body", "PosedBody", "SMPLXFilesError", "load_body", "skeleton"]
