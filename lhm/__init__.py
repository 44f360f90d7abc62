"""LHM: one photo to an animatable 3D Gaussian avatar, on CPU or GPU, installed with pip alone."""
from .avatar import Avatar
from .body import Body, load_body
from .gaussians import Gaussians
from .motion import Motion, MotionError, list_motions, load_motion, motion_camera, save_motion
from .render import RenderOutput, render
from .render.camera import Camera

__version__ = "0.1.0"

__all__ = [
    "Avatar", "Body", "Camera", "Gaussians", "Motion", "MotionError", "RenderOutput", "list_motions",
    "load_body", "load_motion", "motion_camera", "render", "save_motion", "__version__",
]
