"""The public API: ``Pipeline.from_pretrained(...)``, then ``reconstruct`` a photo and ``animate`` the avatar.

    pipe = lhm.Pipeline.from_pretrained("fit")          # or "LHM-500M", a hub id, a local folder
    avatar = pipe.reconstruct("photo.jpg")
    clip = pipe.animate(avatar, "wave", size=512)
    lhm.save_outputs("out", avatar, clip)

Engines make the Avatar; everything after it (posing, rendering, export) is shared.
"""
from __future__ import annotations

import math
import numbers
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .avatar import Avatar
from .gaussians import Gaussians
from .errors import InputError
from .models.configs import OFFICIAL_NAMES
from .motion import MAX_FRAMES, Motion, load_motion, motion_camera
from .motion.cameras import MODES as CAMERA_MODES
from .preprocess import PersonImage, prepare
from .render import render
from .render.camera import Camera
from .render.cameras import turntable

ENGINES = ("fit", *OFFICIAL_NAMES)
RENDER_CHUNK = 16  # frames posed at once: bounds memory on long motions
SIZE_RANGE = (16, 4096)  # pixels a side: below, nothing is recognisable; above, one frame alone is ~100 MB
MAX_FPS = 240.0  # beyond this resampling only multiplies frames (and memory) without smoother motion
BYTES_PER_PIXEL = 3 + 4  # an Animation keeps rgb uint8 and alpha float32 for every frame
MAX_FRAMES_BYTES = 8 * 2**30  # a 10 s, 30 fps, 1024 px video takes 2.1 GB; the cap keeps a bad request from swapping


@dataclass
class Animation:
    """Rendered frames: rgb [F,H,W,3] uint8 and alpha [F,H,W] float32 (CPU tensors), at ``fps``."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    fps: float
    camera: Camera

    def __len__(self) -> int:
        return self.rgb.shape[0]


def _silent(fraction: float, desc: str) -> None:
    pass


def _span(progress, start: float, stop: float):
    """A progress callback mapping [0,1] onto [start, stop] of ``progress``."""
    return lambda fraction, desc: progress(start + (stop - start) * fraction, desc)


class Pipeline:
    """Photo -> Avatar -> animation with one engine, loaded once and reused across calls."""

    def __init__(self, engine, name: str):
        self.engine = engine
        self.name = name

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = "fit", device: torch.device | str | None = None,
                        **kwargs) -> "Pipeline":
        """``"fit"`` (offline default, no weights) or an LHM checkpoint: a name of ``ENGINES``, a hub id, a folder.

        Extra keyword arguments go to the engine (for LHM: ``dtype``, ``smplx_dir``, ``sapiens_path``...).
        """
        if str(name_or_path).lower() == "fit":
            from .engines.fit import FitEngine

            return cls(FitEngine(device=device, **kwargs), "fit")
        name = str(name_or_path)
        # a bare word is neither a hub id (owner/name) nor a folder: the loader would send the user
        # looking for a '3DAIGC/<typo>' repository that does not exist
        if name not in OFFICIAL_NAMES and "/" not in name and os.sep not in name and not Path(name).exists():
            raise InputError(f"Unknown engine '{name}': use one of {', '.join(ENGINES)}, a hub id (owner/name) "
                             "or the folder of a checkpoint.")
        from .engines.lhm_engine import LHMEngine

        return cls(LHMEngine.from_pretrained(name_or_path, device=device, **kwargs), str(name_or_path))

    @property
    def device(self) -> torch.device:
        """Where the engine computes and the animation renders."""
        return torch.device(self.engine.device)

    def prepare(self, image, mask=None, *, remove_background: bool = True, progress=None) -> PersonImage:
        """Load, segment, crop and fit the engine's body to the person in ``image`` (see ``lhm.preprocess.prepare``)."""
        # fitting runs on the CPU whatever the engine's device
        return prepare(image, mask, body=self.engine.body.to("cpu"), remove_background=remove_background, progress=progress)

    def reconstruct(self, image, mask=None, *, remove_background: bool = True, progress=None) -> Avatar:
        """A photo (path, bytes, PIL image, array, tensor) or a prepared ``PersonImage`` to an Avatar.

        ``avatar.info`` gets ``person`` (the PersonImage), ``warnings`` (sentences for the user) and
        ``timings`` (seconds per stage). Bad input raises ``lhm.InputError``.
        """
        progress = progress or _silent
        timings = {}
        person = image
        if not isinstance(image, PersonImage):
            t0 = time.perf_counter()
            person = self.prepare(image, mask, remove_background=remove_background, progress=_span(progress, 0.0, 0.4))
            timings["prepare"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        avatar = self.engine.reconstruct_person(person, progress=_span(progress, 0.4, 1.0))
        timings["reconstruct"] = time.perf_counter() - t0
        progress(1.0, "avatar ready")
        avatar.info.update(person=person, warnings=list(person.warnings), timings=timings)
        return avatar

    def animate(self, avatar: Avatar, motion: Motion | str | os.PathLike = "wave", *, size: int | tuple[int, int] = 512,
                camera: str | Camera = "auto", fps: float | None = None, duration: float | None = None,
                background=1.0, progress=None) -> Animation:
        """Render ``avatar`` performing ``motion`` (a Motion, a preset name or a motion file).

        ``size``: pixels (square) or (width, height); ``camera``: "auto", "front", "orbit", "motion"
        or a Camera batch [F]; ``fps`` resamples the motion; ``duration`` (seconds) trims or loops it;
        ``background``: grey level or RGB in [0,1]. Frames are posed in chunks so memory stays flat.
        """
        progress = progress or _silent
        width, height = check_size(size)
        motion = timed_motion(motion, fps, duration, body=avatar)
        check_camera(motion, camera)
        check_frames_memory(len(motion), width, height)
        cams = camera if isinstance(camera, Camera) else motion_camera(motion, avatar, mode=camera, width=width,
                                                                        height=height)
        avatar = avatar.to(self.device)
        cams = cams.to(self.device)
        bg = torch.as_tensor(background, dtype=torch.float32, device=self.device).expand(3)
        rgb, alpha = [], []
        with torch.no_grad():
            for start in range(0, len(motion), RENDER_CHUNK):
                frames = list(range(start, min(start + RENDER_CHUNK, len(motion))))
                posed = avatar.pose(motion, frames)
                for k, i in enumerate(frames):
                    out = render(posed.frame(k), cams[i], background=bg)
                    rgb.append((out.rgb.clamp(0, 1) * 255).round().to(torch.uint8).cpu())
                    alpha.append(out.alpha[..., 0].cpu())
                    progress((i + 1) / len(motion), f"rendering frame {i + 1}/{len(motion)}")
        return Animation(torch.stack(rgb), torch.stack(alpha), motion.fps, cams.to("cpu"))


def parse_colour(value: str | None) -> tuple[float, float, float]:
    """``#rgb``, ``#rrggbb``, ``#rrggbbaa`` (``#`` optional) or ``rgb(a)(r, g, b, ...)`` as RGB in [0,1]; empty is white."""
    text = (value or "#ffffff").strip()
    digits = text.lstrip("#")
    if len(digits) in (3, 6, 8) and all(c in "0123456789abcdefABCDEF" for c in digits):
        digits = "".join(c * 2 for c in digits) if len(digits) == 3 else digits
        return tuple(int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4))
    match = re.fullmatch(r"rgba?\(\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*(,.*)?\)", text)
    if match:
        return tuple(min(255.0, float(v)) / 255 for v in match.groups()[:3])
    raise InputError(f"Background colour '{value}' is not a colour: pick one or write it as a hex colour like #ffffff.")


def check_size(size: int | tuple[int, int]) -> tuple[int, int]:
    """``size`` (pixels, square, or (width, height)) as (width, height); InputError outside ``SIZE_RANGE``."""
    width, height = (size, size) if isinstance(size, numbers.Real) else size  # numpy ints too
    low, high = SIZE_RANGE
    if not all(float(v).is_integer() and low <= v <= high for v in (width, height)):
        raise InputError(f"Video size {width}x{height} px is not possible: use whole numbers from {low} to {high} "
                         "pixels a side (512 is the default).")
    return int(width), int(height)


def check_frames_memory(frames: int, width: int, height: int) -> None:
    """InputError when the rendered frames (rgb uint8 + alpha float32, all kept) would exceed ``MAX_FRAMES_BYTES``."""
    need = frames * width * height * BYTES_PER_PIXEL
    if need > MAX_FRAMES_BYTES:
        raise InputError(f"{frames} frames of {width}x{height} px would need {need / 2**30:.1f} GB of memory (at most "
                         f"{MAX_FRAMES_BYTES / 2**30:.0f} GB): make the video shorter, smaller or at a lower frame rate.")


def check_camera(motion: Motion, camera: str | Camera) -> None:
    """Raise InputError when ``camera`` (a mode or a Camera batch) cannot film ``motion``."""
    if isinstance(camera, Camera):
        if tuple(camera.batch_shape) != (len(motion),):
            raise InputError(f"The camera batch has shape {tuple(camera.batch_shape)} but the motion has "
                             f"{len(motion)} frames: pass one camera per frame (batch [{len(motion)}]) or a mode "
                             f"({', '.join(CAMERA_MODES)}).")
    elif camera not in CAMERA_MODES:
        raise InputError(f"Unknown camera '{camera}': use one of {', '.join(CAMERA_MODES)}.")
    elif camera == "motion" and motion.camera is None:
        raise InputError(f"Camera 'motion' needs a motion that brings its own camera (an LHM smplx_params motion); "
                         f"'{motion.name or 'this motion'}' has no camera of its own (presets and AMASS files have none) — use camera 'auto', 'front' or 'orbit'.")


def timed_motion(motion: Motion | str | os.PathLike, fps: float | None = None, duration: float | None = None,
                 body=None) -> Motion:
    """Load ``motion`` if needed (a preset fitted to ``body``, a Body or Avatar), resample it to ``fps``
    and trim or loop it to ``duration`` seconds.

    Raises InputError for an fps outside (0, ``MAX_FPS``], a duration that is not positive, or a
    result longer than ``MAX_FRAMES`` frames (every frame is held in memory once rendered).
    """
    if fps is not None and not (math.isfinite(fps) and 0 < fps <= MAX_FPS):
        raise InputError(f"Frame rate {fps:g} fps is not possible: use a number above 0 and up to {MAX_FPS:g} "
                         "(or none to keep the motion's own).")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise InputError(f"Duration {duration:g} s is not possible: use a number of seconds above 0 "
                         "(or none to keep the motion's length).")
    if not isinstance(motion, Motion):
        motion = load_motion(motion, body=body)
    rate = fps if fps is not None else motion.fps
    frames = round(duration * rate) if duration is not None else round(len(motion) * rate / motion.fps)
    if frames > MAX_FRAMES:
        raise InputError(f"That is {frames} frames ({frames / rate:.1f} s at {rate:g} fps), more than the "
                         f"{MAX_FRAMES} that can be rendered: shorten the duration or lower the frame rate.")
    if frames < 1:
        raise InputError(f"{duration:g} s at {rate:g} fps is less than one frame: use a longer duration.")
    if fps is not None and fps != motion.fps:
        motion = motion.resample(fps)
    if duration is not None:
        frames = round(duration * motion.fps)
        motion = motion.trim(0, frames) if frames <= len(motion) else motion.loop(duration)
    return motion


def save_outputs(out_dir: str | os.PathLike, avatar: Avatar, animation: Animation | None = None, *,
                 turntable_size: int = 320, turntable_views: int = 24) -> dict[str, Path]:
    """Write what a user downloads; returns {kind: path}.

    tpose.ply and canonical.ply (3DGS), avatar.splat, turntable.webp, and when given animation.mp4;
    input.png (the processed crop with its mask as alpha) when the avatar came from a photo.
    The files appear together once all are written (replacing those of an earlier run); on an error
    the folder is left as it was. InputError when ``out_dir`` cannot be written (see ``check_out_dir``).
    """
    import numpy as np
    from PIL import Image

    from .io import save_ply, save_preview, save_splat, save_video

    out = check_out_dir(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # everything is written to a hidden folder first and moved in at the end, so an error or Ctrl-C
    # leaves neither half-written files nor a mix of this run's and a previous run's outputs
    stage = Path(tempfile.mkdtemp(prefix=".lhm-partial-", dir=out))
    try:
        staged = {"tpose_ply": stage / "tpose.ply", "canonical_ply": stage / "canonical.ply",
                  "splat": stage / "avatar.splat", "turntable": stage / "turntable.webp"}
        tpose = avatar.tpose().detach()  # posed once for the three files that show it
        save_ply(staged["tpose_ply"], tpose)
        save_ply(staged["canonical_ply"], avatar.gaussians.detach())
        save_splat(staged["splat"], tpose)
        save_preview(staged["turntable"], turntable_frames(tpose, turntable_views, turntable_size), fps=12,
                     max_size=turntable_size)
        if animation is not None:
            staged["video"] = save_video(stage / "animation.mp4", animation.rgb, fps=animation.fps)
        person = avatar.info.get("person")
        if person is not None:
            rgba = np.concatenate([person.crop.rgb, person.crop.mask[..., None]], axis=-1)
            staged["input"] = stage / "input.png"
            Image.fromarray((rgba.clip(0, 1) * 255).round().astype(np.uint8)).save(staged["input"])
        paths = {}
        for kind, path in staged.items():
            paths[kind] = out / path.name
            os.replace(path, paths[kind])
        return paths
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def check_out_dir(out_dir: str | os.PathLike) -> Path:
    """``out_dir`` as a Path; InputError when it, or the folder it would be made in, is a file or not writable.

    Creates nothing, so a front end can check before hours of work and leave no empty folder on failure.
    """
    out = Path(out_dir)
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"Cannot write the outputs to {out}: {existing} is a file, not a folder — "
                         "choose another output folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"Cannot write the outputs to {out}: {existing} is not writable — "
                         "choose another output folder.")
    return out


def turntable_frames(gaussians: Gaussians, views: int = 36, size: int = 384, background=1.0) -> torch.Tensor:
    """Gaussians (e.g. ``avatar.tpose()``) seen from ``views`` directions around them: rgb [views,size,size,3] in [0,1]."""
    cams = turntable(gaussians.means, views, size, size, elevation_deg=10.0)
    with torch.no_grad():
        return torch.stack([render(gaussians, cams[i].to(gaussians.means.device), background=background).rgb.cpu()
                            for i in range(views)])
