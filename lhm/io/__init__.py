"""File formats: 3DGS ``.ply`` and ``.splat`` for Gaussians, MP4/PNG/GIF/WebP for rendered frames."""
from .ply import load_ply, save_ply
from .splat import load_splat, save_splat
from .video import save_frames, save_preview, save_video

__all__ = ["load_ply", "load_splat", "save_frames", "save_ply", "save_preview", "save_splat", "save_video"]
