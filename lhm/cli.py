"""Command line: ``lhm avatar PHOTO`` (photo to animated avatar) and ``lhm motions``.

Exit codes: 0 success, 2 bad input (with a message saying what to do), 1 internal error, 130 interrupted (Ctrl-C).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
import traceback

from tqdm import tqdm

from . import InputError, list_motions
from .models.configs import OFFICIAL_NAMES
from .motion.cameras import MODES


class _Bar:
    """A tqdm bar driven by ``progress(fraction, desc)`` callbacks."""

    def __init__(self, desc: str):
        self.bar = tqdm(total=1000, desc=desc, bar_format="{desc:<32.32} {percentage:3.0f}%|{bar}| {elapsed}")

    def __call__(self, fraction: float, desc: str) -> None:
        self.bar.set_description_str(desc, refresh=False)
        self.bar.update(max(0, round(fraction * 1000) - self.bar.n))

    def close(self) -> None:
        self.bar.close()


def _run_with_bar(desc: str, fn, *args, **kwargs):
    bar = _Bar(desc)
    try:
        return fn(*args, progress=bar, **kwargs)
    finally:
        bar.close()


def _avatar(args) -> int:
    from .pipeline import (
        Pipeline,
        check_camera,
        check_frames_memory,
        check_out_dir,
        check_size,
        save_outputs,
        timed_motion,
    )

    # options are checked before the engine loads and the photo is reconstructed, so that a typo
    # costs a second rather than the whole reconstruction
    width, height = check_size(args.size)
    motion = timed_motion(args.motion, args.fps, args.duration)
    check_camera(motion, args.camera)
    check_frames_memory(len(motion), width, height)
    check_out_dir(args.out)
    t0 = time.perf_counter()
    pipe = Pipeline.from_pretrained(args.engine)
    t_load = time.perf_counter() - t0
    avatar = _run_with_bar("reconstructing", pipe.reconstruct, args.photo, mask=args.mask,
                           remove_background=not args.no_remove_background)
    for warning in avatar.info["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)
    t1 = time.perf_counter()
    clip = _run_with_bar("animating", pipe.animate, avatar, args.motion, size=args.size, camera=args.camera,
                         fps=args.fps, duration=args.duration)
    t_anim = time.perf_counter() - t1
    t2 = time.perf_counter()
    try:
        paths = save_outputs(args.out, avatar, clip)
    except OSError as e:  # disk full, permissions changed mid-run: the user's to fix, not a bug
        raise InputError(f"Cannot write the outputs to {args.out} ({e}) — check that folder (free space, "
                         "permissions), or choose another --out folder.") from e
    t_save = time.perf_counter() - t2
    timings = avatar.info["timings"]
    print(f"wrote {', '.join(p.name for p in paths.values())} to {args.out} | load {t_load:.1f} s, "
          f"prepare {timings.get('prepare', 0):.1f} s, reconstruct {timings['reconstruct']:.1f} s, "
          f"animate {t_anim:.1f} s ({len(clip)} frames), save {t_save:.1f} s, "
          f"total {time.perf_counter() - t0:.1f} s")
    return 0


def _motions(_args) -> int:
    for info in list_motions():
        print(f"{info.name:20s} {info.display_name:22s} {info.duration:4.1f} s")
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lhm", description="LHM: one photo to an animatable 3D Gaussian avatar.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log details and show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    a = sub.add_parser("avatar", help="make an animated avatar from a photo",
                       description="Photo to avatar: writes animation.mp4, tpose.ply, canonical.ply, avatar.splat, "
                                   "input.png (the processed photo) and turntable.webp into --out.")
    a.add_argument("photo", help="photo of one person (jpg, png, webp...; a PNG cut-out works too)")
    a.add_argument("--motion", default="wave", help="preset name (see `lhm motions`) or a motion file/folder/zip "
                                                    "(default: wave)")
    a.add_argument("--engine", default="fit", help=f"fit (offline, default), {', '.join(OFFICIAL_NAMES)}, "
                                                   "a hub id or a local checkpoint folder")
    a.add_argument("--mask", help="the person's mask (image file); skips background removal")
    a.add_argument("--no-remove-background", action="store_true",
                   help="use the photo's own transparency instead of background removal")
    a.add_argument("--size", type=int, default=512, help="video size in pixels (default: 512)")
    a.add_argument("--fps", type=float, help="video frame rate (default: the motion's)")
    a.add_argument("--duration", type=float, help="video length in seconds: trims or loops the motion")
    a.add_argument("--camera", default="auto", choices=MODES, help="camera (default: auto)")
    a.add_argument("--out", default="out/avatar", help="output folder (default: out/avatar)")
    a.set_defaults(run=_avatar)
    sub.add_parser("motions", help="list the preset motions").set_defaults(run=_motions)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``lhm`` command; returns the exit code (0 ok, 2 bad input, 1 internal error)."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.run(args)
    except (InputError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 - the last line of defence: a short message, the traceback on request
        if args.verbose:
            traceback.print_exc()
        print(f"internal error: {type(e).__name__}: {e} (run with --verbose for details; please report it)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
