"""Fit engine quality and speed over ``examples/``: input-view IoU, PSNR and SSIM in the mask, time,
a turntable contact sheet per example, and photo -> avatar -> 4 s video against the 30 s target.

Run: python benchmarks/quality.py [--examples examples] [--out out/quality] [--video]

Two paths per example:
- ``exact``: synthetic examples only (``scripts/make_examples.py``): the crop view rendered with its
  known body fit, so the engine alone is measured, free of fitting errors.
- ``photo``: the photo through ``lhm.preprocess.prepare`` (segmentation, crop, body fitting) and the
  engine: the whole path a user gets. RGBA cut-outs use their own alpha.
Times are wall-clock after a warm-up run (numba compiles on first use).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import lhm
from lhm.engines.fit import FitEngine
from lhm.preprocess import prepare
from lhm.render.cameras import turntable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
import make_examples
from results import cpu_model


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray, sigma: float = 1.5) -> float:
    """Mean SSIM (Wang et al. 2004, Gaussian window, luminance of RGB in [0,1]) over ``mask`` pixels."""
    from scipy.ndimage import gaussian_filter

    weights = np.array([0.299, 0.587, 0.114], np.float64)
    x, y = a.astype(np.float64) @ weights, b.astype(np.float64) @ weights
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    blur = lambda t: gaussian_filter(t, sigma, truncate=3.5)
    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(s[mask > 0.5].mean())


def input_view(avatar: lhm.Avatar, person) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The avatar rendered through the fitted crop camera over white, with the photo composited on white and the mask."""
    fit = person.fit
    with torch.no_grad():
        g = avatar.pose(fit.full_pose[None].float(), trans=fit.transl[None].float()).frame(0)
        rgb = lhm.render(g, fit.camera, background=1.0).rgb.numpy()
    m = person.crop.mask[..., None]
    return rgb, person.crop.rgb * m + (1 - m), person.crop.mask


def contact_sheet(avatar: lhm.Avatar, person, path: Path, views: int = 8, height: int = 400) -> None:
    """Photo crop, input-view render, then a turntable of the fitted pose (front, ..., back at the middle)."""
    rgb, photo, _ = input_view(avatar, person)
    fit = person.fit
    with torch.no_grad():
        g = avatar.pose(fit.full_pose[None].float(), trans=fit.transl[None].float()).frame(0)
        width = int(round(height * 0.6))
        cams = turntable(g.means, views, width, height)
        turn = lhm.render(g, cams, background=1.0).rgb.numpy()
    def fit_h(img):
        im = Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8))
        return np.asarray(im.resize((round(im.width * height / im.height), height), Image.LANCZOS))
    panels = [fit_h(photo), fit_h(rgb)] + [fit_h(v) for v in turn]
    Image.fromarray(np.concatenate(panels, axis=1)).save(path)


def synthetic_person(spec, body):
    """PersonImage of a synthetic example's exact crop view and body fit (no preprocessing)."""
    from lhm.preprocess.types import BodyFit, LoadedImage, PersonCrop, PersonImage, Segmentation

    img, cam, pose, betas, transl = make_examples.render_person(spec, body, crop=True)
    # the mask is the render's alpha: render once more over black and over white
    black, *_ = make_examples.render_person(_plain(spec, (0.0, 0.0, 0.0)), body, crop=True)
    white, *_ = make_examples.render_person(_plain(spec, (1.0, 1.0, 1.0)), body, crop=True)
    mask = 1.0 - (white.astype(np.float32) - black.astype(np.float32)).mean(-1) / 255.0
    rgb = img.astype(np.float32) / 255.0
    h, w = mask.shape
    return PersonImage(LoadedImage(img), Segmentation(mask.astype(np.float32), "synthetic"),
                       PersonCrop(rgb, mask.astype(np.float32), (0.0, 0.0, float(w), float(h)), 1.0),
                       BodyFit(cam, pose, betas, transl, (0.0, 0.0, float(w), 0.2 * h), 1.0))


def _plain(spec, colour):
    return make_examples.Person(**{**spec.__dict__, "background": colour, "background2": None})


def measure(engine: FitEngine, person, name: str, out: Path, prepare_s: float = 0.0) -> dict:
    """Engine time, scores of the input view and the contact sheet of one prepared person."""
    t, c = time.perf_counter(), time.process_time()
    avatar = engine.reconstruct_person(person)
    seconds, cpu = time.perf_counter() - t, time.process_time() - c
    rgb, photo, mask = input_view(avatar, person)
    contact_sheet(avatar, person, out / f"{name}.png")
    return {"name": name, "prepare_s": prepare_s, "engine_s": seconds, "engine_cpu_s": cpu, "iou": avatar.info["iou"],
            "psnr": avatar.info["psnr"], "ssim": ssim(rgb, photo, mask), "fit_iou": person.fit.iou}


def video_timing(engine: FitEngine, image_path: Path, out: Path, rgba: bool) -> dict:
    """Photo -> avatar -> 4 s, 30 fps, 512x512 waving video (mp4), timed by stage."""
    from lhm.io import save_video

    t0 = time.perf_counter()
    person = prepare(image_path, remove_background=not rgba)
    t1 = time.perf_counter()
    avatar = engine.reconstruct_person(person)
    t2 = time.perf_counter()
    motion = lhm.load_motion("wave", fps=30.0)
    frames_n = 120
    index = [i % len(motion) for i in range(frames_n)]
    motion = motion.select(index)
    cams = lhm.motion_camera(motion, avatar, width=512, height=512)
    frames = []
    with torch.no_grad():
        for start in range(0, frames_n, 10):
            sel = list(range(start, min(frames_n, start + 10)))
            frames.append(lhm.render(avatar.pose(motion, sel), cams[sel[0]:sel[-1] + 1], background=1.0).rgb)
    t3 = time.perf_counter()
    save_video(out / "video.mp4", torch.cat(frames), fps=30.0)
    t4 = time.perf_counter()
    return {"prepare": t1 - t0, "engine": t2 - t1, "render": t3 - t2, "encode": t4 - t3, "total": t4 - t0}


def main(argv=None) -> int:
    """Run every example through both paths, print a table, write contact sheets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", default=str(ROOT / "examples"))
    parser.add_argument("--out", default="out/quality")
    parser.add_argument("--num-gaussians", type=int, default=40_000)
    parser.add_argument("--video", action="store_true", help="also time photo -> avatar -> 4 s video")
    parser.add_argument("--only", nargs="*", help="example names to run (default: all)")
    parser.add_argument("--paths", nargs="+", choices=["exact", "photo"], default=["exact", "photo"])
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    examples = Path(args.examples)
    body = lhm.load_body("free")
    engine = FitEngine(num_gaussians=args.num_gaussians, body=body)
    specs = {p.name: p for p in make_examples.people()}
    files = sorted(f for f in examples.iterdir() if f.suffix in (".jpg", ".png"))
    if args.only:
        files = [f for f in files if f.stem in args.only]
    print(f"machine: {os.cpu_count()} cores, {cpu_model()}, torch {torch.__version__}, "
          f"torch threads {torch.get_num_threads()}, load average {os.getloadavg()[0]:.1f}")
    warm = synthetic_person(next(iter(specs.values())), body)
    engine.reconstruct_person(warm)  # numba compile and the engine's sampling happen here
    rows = []
    for f in files:
        if f.stem in specs and "exact" in args.paths:
            rows.append({**measure(engine, synthetic_person(specs[f.stem], body), f"{f.stem}-exact", out),
                         "path": "exact"})
            _print(rows[-1:])
        if "photo" in args.paths:
            try:
                t = time.perf_counter()
                person = prepare(f, remove_background=not (f.suffix == ".png" and Image.open(f).mode == "RGBA"))
                rows.append({**measure(engine, person, f"{f.stem}-photo", out, time.perf_counter() - t),
                             "path": "photo"})
                _print(rows[-1:])
            except Exception as e:  # report and go on: one unusable photo must not hide the others
                print(f"{f.name}: photo path failed: {type(e).__name__}: {e}")
    print()
    _print(rows, header=True)
    if args.video:
        first = next(f for f in files if f.stem in specs)
        times = video_timing(engine, first, out, rgba=f"{first.suffix}" == ".png")
        print(f"\nphoto -> avatar -> 4 s 30 fps 512 px video ({first.name}): "
              + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()) + " (target 30 s)")
    print(f"contact sheets in {out}/; load average now {os.getloadavg()[0]:.1f}")
    return 0


def _print(rows: list[dict], header: bool = False) -> None:
    if header:
        print("| example | path | prepare s | engine s (CPU s) | body-fit IoU | IoU | PSNR dB | SSIM |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['name']} | {r['path']} | {r['prepare_s']:.1f} | {r['engine_s']:.1f} ({r['engine_cpu_s']:.1f}) | {r['fit_iou']:.3f} | "
              f"{r['iou']:.3f} | {r['psnr']:.1f} | {r['ssim']:.3f} |")


if __name__ == "__main__":
    raise SystemExit(main())
