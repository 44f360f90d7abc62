"""The public API: ``Pipeline.from_pretrained(...)``, then ``reconstruct`` a photo and ``animate`` the avatar.

    pipe = lhm.Pipeline.from_pretrained("fit")          # or "LHM-500M", a hub id, a local folder
    avatar = pipe.reconstruct("photo.jpg")
    clip = pipe.animate(avatar, "wave", size=512)
    lhm.save_outputs("out", avatar, clip)

Engines make the Avatar; everything after it (posing, rendering, export) is shared.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from .avatar import Avatar
from .models.configs import OFFICIAL_NAMES
from .motion import Motion, load_motion, motion_camera
from .preprocess import PersonImage, prepare
from .render import render
from .render.camera import Camera
from .render.cameras import turntable

ENGINES = ("fit", *OFFICIAL_NAMES)
RENDER_CHUNK = 16  # frames posed at once: bounds memory on long motions


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
        motion = timed_motion(motion, fps, duration, body=avatar)
        width, height = (size, size) if isinstance(size, int) else size
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


def timed_motion(motion: Motion | str | os.PathLike, fps: float | None = None, duration: float | None = None,
                 body=None) -> Motion:
    """Load ``motion`` if needed (a preset fitted to ``body``, a Body or Avatar), resample it to ``fps``
    and trim or loop it to ``duration`` seconds."""
    if not isinstance(motion, Motion):
        motion = load_motion(motion, body=body)
    if fps is not None and fps != motion.fps:
        motion = motion.resample(fps)
    if duration is not None:
        frames = max(1, round(duration * motion.fps))
        motion = motion.trim(0, frames) if frames <= len(motion) else motion.loop(duration)
    return motion


def save_outputs(out_dir: str | os.PathLike, avatar: Avatar, animation: Animation | None = None, *,
                 turntable_size: int = 320, turntable_views: int = 24) -> dict[str, Path]:
    """Write what a user downloads; returns {kind: path}.

    tpose.ply and canonical.ply (3DGS), avatar.splat, turntable.webp, and when given animation.mp4;
    input.png (the processed crop with its mask as alpha) when the avatar came from a photo.
    """
    import numpy as np
    from PIL import Image

    from .io import save_preview, save_video

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"tpose_ply": out / "tpose.ply", "canonical_ply": out / "canonical.ply", "splat": out / "avatar.splat",
             "turntable": out / "turntable.webp"}
    avatar.save_ply(paths["tpose_ply"])
    avatar.save_ply(paths["canonical_ply"], pose="canonical")
    avatar.save_splat(paths["splat"])
    save_preview(paths["turntable"], turntable_frames(avatar, turntable_views, turntable_size), fps=12,
                 max_size=turntable_size)
    if animation is not None:
        paths["video"] = save_video(out / "animation.mp4", animation.rgb, fps=animation.fps)
    person = avatar.info.get("person")
    if person is not None:
        rgba = np.concatenate([person.crop.rgb, person.crop.mask[..., None]], axis=-1)
        paths["input"] = out / "input.png"
        Image.fromarray((rgba.clip(0, 1) * 255).round().astype(np.uint8)).save(paths["input"])
    return paths


def turntable_frames(avatar: Avatar, views: int = 36, size: int = 384, background=1.0) -> torch.Tensor:
    """The T-posed avatar seen from ``views`` directions around it: rgb [views,size,size,3] in [0,1]."""
    gaussians = avatar.tpose().detach()
    cams = turntable(gaussians.means, views, size, size, elevation_deg=10.0)
    with torch.no_grad():
        return torch.stack([render(gaussians, cams[i].to(gaussians.means.device), background=background).rgb.cpu()
                            for i in range(views)])
