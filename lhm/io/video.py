"""Frame sequences to files: H.264 MP4, numbered PNGs, and a small animated GIF/WebP preview.

Frames are ``[F,H,W,3]`` RGB, either uint8 or float in [0, 1] (numpy or torch, any device), or
a sequence of ``[H,W,3]`` frames. Float values outside [0, 1] are clipped, as renderers
overshoot slightly. The MP4 goes through the ffmpeg binary bundled in the imageio-ffmpeg wheel.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import torch
from PIL import Image


# ffmpeg's default RGB->YUV conversion rounds poorly (flat colours came back off by up to 3/255)
# and leaves the stream untagged, which browsers decode with differing matrices; convert
# accurately to BT.709 limited range and say so in the stream.
_TO_BT709 = ("scale=out_color_matrix=bt709:out_range=tv:flags=accurate_rnd+full_chroma_int,"
             "setparams=range=tv:color_primaries=bt709:color_trc=bt709:colorspace=bt709")


def save_video(path: str | os.PathLike, frames, fps: float = 30.0, crf: int = 18) -> Path:
    """Write frames as an MP4 (H.264, yuv420p BT.709, faststart) that browsers play; returns the path.

    yuv420p needs even sizes, so an odd height or width gets one more row or column
    repeating the edge pixels (bottom/right). ``crf`` is x264's quality (lower is better,
    18 is visually lossless).
    """
    video = _pad_to_even(_as_uint8_frames(frames))
    fps = _check_fps(fps)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(
        str(path), (video.shape[2], video.shape[1]), fps=fps, codec="libx264", quality=None,
        # sizes are already even; the default 16-pixel macro block would rescale the frames
        macro_block_size=1, ffmpeg_log_level="error",
        # faststart moves the index to the front so browsers can play while downloading
        output_params=["-vf", _TO_BT709, "-crf", str(crf), "-preset", "medium",
                       "-movflags", "+faststart", "-f", "mp4"])
    writer.send(None)
    try:
        for frame in video:
            writer.send(frame)
    finally:
        writer.close()
    return path


def save_frames(directory: str | os.PathLike, frames) -> list[Path]:
    """Write each frame as ``frame_00000.png``, ``frame_00001.png``, ... in ``directory``; returns the paths."""
    video = _as_uint8_frames(frames)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = [directory / f"frame_{i:05d}.png" for i in range(len(video))]
    for frame, path in zip(video, paths):
        Image.fromarray(frame).save(path)
    return paths


def save_preview(path: str | os.PathLike, frames, fps: float = 30.0, max_size: int = 256) -> Path:
    """Write a looping animated ``.gif`` or ``.webp`` (by extension), downscaled so that its
    longer side is at most ``max_size`` pixels (never upscaled); returns the path.

    GIF stores delays in 1/100 s, so its frame rate is approximate.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".webp"):
        raise ValueError(f"save_preview writes .gif or .webp, not {path.name!r}")
    if max_size < 1:
        raise ValueError(f"max_size must be at least 1, got {max_size}")
    video = _as_uint8_frames(frames)
    fps = _check_fps(fps)
    height, width = video.shape[1:3]
    scale = min(1.0, max_size / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    images = [Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS) for frame in video]
    options = {"quality": 80} if suffix == ".webp" else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=round(1000 / fps), loop=0, **options)
    return path


def _as_uint8_frames(frames) -> np.ndarray:
    """Frames as a C-contiguous uint8 numpy array [F,H,W,3]; ValueError for anything else."""
    if isinstance(frames, Sequence):
        if len(frames) == 0:
            raise ValueError("no frames given")
        arrays = [_to_numpy(frame) for frame in frames]
        shapes = {(a.shape, a.dtype) for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"frames differ in shape or dtype: {sorted(map(str, shapes))}")
        video = np.stack(arrays)
    else:
        video = _to_numpy(frames)
    if video.ndim != 4 or video.shape[-1] != 3 or 0 in video.shape:
        raise ValueError(f"frames must be RGB [F,H,W,3] with F, H, W >= 1, got shape {video.shape}")
    if video.dtype == np.uint8:
        return np.ascontiguousarray(video)
    if video.dtype.kind != "f":
        raise ValueError(f"frames must be uint8 or float in [0, 1], got dtype {video.dtype}")
    if not np.isfinite(video).all():
        raise ValueError("frames hold NaN or infinite values")
    return np.rint(np.clip(video, 0.0, 1.0) * 255).astype(np.uint8)


def _to_numpy(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        # numpy cannot take bfloat16, and float32 holds every 8-bit level exactly
        return (x.float() if x.is_floating_point() else x).numpy()
    return np.asarray(x)


def _pad_to_even(video: np.ndarray) -> np.ndarray:
    _, height, width, _ = video.shape
    if height % 2 == 0 and width % 2 == 0:
        return video
    return np.pad(video, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _check_fps(fps) -> float:
    fps = float(fps)
    if not (math.isfinite(fps) and fps > 0):
        raise ValueError(f"fps must be a positive number, got {fps}")
    return fps
