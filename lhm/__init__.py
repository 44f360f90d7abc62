"""LHM: one photo to an animatable 3D Gaussian avatar, on CPU or GPU, installed with pip alone."""
import os

# Both torch and numba run OpenMP thread pools; threads that spin-wait between parallel regions starve
# the other pool (torch ops after a numba kernel ran ~30x slower on 2 cores). Sleeping threads cost
# microseconds. Only effective when lhm is imported before torch starts its pool; set it yourself otherwise.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .avatar import Avatar
from .body import Body, load_body
from .errors import InputError
from .gaussians import Gaussians
from .motion import Motion, MotionError, list_motions, load_motion, motion_camera, save_motion
from .render import RenderOutput, render
from .render.camera import Camera

__version__ = "0.1.0"

# the photo pipeline pulls in OpenCV and the preprocessing stack: loaded on first use
_LAZY = {"Pipeline": "pipeline", "Animation": "pipeline", "save_outputs": "pipeline", "prepare": "preprocess",
         "PersonImage": "preprocess"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'lhm' has no attribute {name!r}")


__all__ = [
    "Animation", "Avatar", "Body", "Camera", "Gaussians", "InputError", "Motion", "MotionError", "PersonImage",
    "Pipeline", "RenderOutput", "list_motions", "load_body", "load_motion", "motion_camera", "prepare", "render",
    "save_motion", "save_outputs", "__version__",
]
