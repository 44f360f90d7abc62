"""Write ``examples/``: synthetic full-body people rendered from the free body, plus public-domain
photos shipped inside PyPI packages (scikit-image's ``astronaut`` and ``camera``).

Deterministic: the same code and packages give byte-identical files. Run from the repository root:

    python scripts/make_examples.py [--out examples]

Each synthetic person is the free body in a known pose, shape and camera, dressed by colouring and
offsetting its Gaussians (shirt, trousers or skirt, shoes, skin, a hair cap). ``people()`` and
``render_person()`` are also used by ``benchmarks/quality.py`` to get the exact body fit of a
synthetic example without running the preprocessing.
"""
from __future__ import annotations

import argparse
import io
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import lhm
from lhm.body import skeleton
from lhm.body.canonical import CanonicalSpace
from lhm.render.cameras import frame_points

NUM_GAUSSIANS = 80_000
CROP_SIZE = (384, 640)  # width, height: LHM's 5:3 person crop


@dataclass
class Person:
    """One synthetic example: pose as {joint: axis-angle}, shape, outfit colours and the picture."""

    name: str
    pose: dict = field(default_factory=dict)
    betas: tuple = (0.0,)
    skin: tuple = (0.80, 0.62, 0.50)
    hair: tuple = (0.15, 0.10, 0.07)
    shirt: tuple = (0.20, 0.35, 0.65)
    shirt2: tuple | None = None  # second colour: horizontal stripes
    trousers: tuple = (0.22, 0.22, 0.26)
    skirt: bool = False
    long_hair: bool = False
    sleeves: str = "short"  # "short" or "long"
    background: tuple = (1.0, 1.0, 1.0)
    background2: tuple | None = None  # vertical gradient to this colour
    yaw_deg: float = 0.0
    size: tuple = (512, 768)  # photo width, height
    rgba: bool = False


def _aa(axis, deg):
    return (np.asarray(axis, float) * math.radians(deg)).tolist()


A_POSE = {"left_shoulder": _aa((0, 0, 1), -60), "right_shoulder": _aa((0, 0, 1), 60)}


def people() -> list[Person]:
    """The synthetic examples (distinct outfits, poses, shapes and backgrounds)."""
    return [
        Person("anna_stripes", pose=A_POSE, shirt=(0.75, 0.15, 0.15), shirt2=(0.95, 0.92, 0.85),
               trousers=(0.15, 0.20, 0.40), hair=(0.35, 0.20, 0.08), long_hair=True,
               background=(0.93, 0.94, 0.96)),
        Person("ben_walk", pose={**A_POSE, "left_hip": _aa((1, 0, 0), -20), "right_hip": _aa((1, 0, 0), 15),
                                 "left_knee": _aa((1, 0, 0), 20), "left_elbow": _aa((0, 1, 0), -25)},
               betas=(1.0, 0.5), skin=(0.55, 0.38, 0.28), shirt=(0.15, 0.55, 0.30), trousers=(0.45, 0.38, 0.28),
               sleeves="long", hair=(0.05, 0.05, 0.05), background=(0.85, 0.90, 0.98),
               background2=(0.55, 0.65, 0.80), yaw_deg=15.0),
        Person("carla_skirt", pose={"left_shoulder": _aa((0, 0, 1), -45), "right_shoulder": _aa((0.3, 0, 1), 70),
                                    "right_elbow": _aa((0, 1, 0), 60)},
               betas=(-1.0, -0.5), skin=(0.92, 0.76, 0.65), shirt=(0.95, 0.80, 0.20), trousers=(0.35, 0.15, 0.45),
               skirt=True, long_hair=True, hair=(0.75, 0.55, 0.25), rgba=True, size=(480, 720)),
        Person("dev_cutout", pose={**A_POSE, "left_elbow": _aa((0, 1, 0), -90), "right_elbow": _aa((0, 1, 0), 90)},
               betas=(0.5, 1.0), skin=(0.68, 0.48, 0.35), shirt=(0.10, 0.10, 0.12), shirt2=(0.85, 0.85, 0.85),
               trousers=(0.60, 0.62, 0.66), hair=(0.10, 0.07, 0.05), rgba=True, size=(400, 640), yaw_deg=-20.0),
    ]


def full_pose(person: Person) -> torch.Tensor:
    """The person's SMPL-X full pose [55,3]."""
    pose = torch.zeros(skeleton.NUM_JOINTS, 3)
    for name, aa in person.pose.items():
        pose[skeleton.JOINT_NAMES.index(name)] = torch.tensor(aa, dtype=torch.float32)
    return pose


def dress(person: Person, body: lhm.Body) -> lhm.Avatar:
    """The person as an avatar: free-body Gaussians coloured and pushed out by the outfit."""
    from lhm.engines.fit import _align_z, _make_template

    tpl = _make_template(body, NUM_GAUSSIANS, seed=7, max_offset=0.12, max_head_offset=0.2)
    space: CanonicalSpace = tpl.space
    p, n = space.points, tpl.normals
    W = space.weights
    names = skeleton.JOINT_NAMES

    def w(*joints):
        return W[:, [names.index(j) for j in joints]].sum(1)

    torso = w("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar")
    upper_arm = w("left_shoulder", "right_shoulder")
    forearm = w("left_elbow", "right_elbow")
    legs = w("left_hip", "right_hip", "left_knee", "right_knee")
    feet = w("left_ankle", "right_ankle", "left_foot", "right_foot")
    head = w("head", "jaw", "left_eye", "right_eye")
    y = p[:, 1]
    head_y = float(body.joints[names.index("head"), 1])
    rgb = lambda c: torch.tensor(c, dtype=torch.float32)
    colors = rgb(person.skin).expand(len(p), 3).clone()
    offsets = torch.zeros(len(p))

    shirt_w = torso + upper_arm + (forearm if person.sleeves == "long" else 0)
    shirt = rgb(person.shirt).expand(len(p), 3)
    if person.shirt2 is not None:
        stripe = (torch.sin(y * 2 * math.pi / 0.08) > 0).float()[:, None]
        shirt = shirt * stripe + rgb(person.shirt2) * (1 - stripe)
    colors = colors * (1 - shirt_w[:, None]) + shirt * shirt_w[:, None]
    offsets += 0.012 * shirt_w
    colors = colors * (1 - legs[:, None]) + rgb(person.trousers) * legs[:, None]
    offsets += 0.01 * legs
    if person.skirt:
        # a flared skirt: offset grows from the hips to just above the knees
        hip_y = float(body.joints[names.index("pelvis"), 1])
        t = ((hip_y - y) / 0.45).clamp(0, 1) * (y > hip_y - 0.45).float()
        offsets += 0.09 * t * (legs + torso).clamp(0, 1)
    colors = colors * (1 - feet[:, None]) + rgb((0.12, 0.10, 0.10)) * feet[:, None]
    offsets += 0.01 * feet
    # hair cap: above the brow and behind the ears, thicker on top; long hair hangs down the back
    rel_y = y - head_y
    cap = ((rel_y > 0.04) | ((p[:, 2] < space.points[:, 2][head > 0.5].mean() - 0.01) & (rel_y > -0.08))).float()
    cap = cap * (head > 0.5).float()
    offsets += cap * (0.012 + 0.02 * (rel_y.clamp(0, 0.15) / 0.15))
    colors = torch.where(cap[:, None] > 0, rgb(person.hair).expand_as(colors), colors)
    if person.long_hair:
        neck_back = (w("neck", "spine3") > 0.3) & (n[:, 2] < -0.2)
        colors = torch.where(neck_back[:, None], rgb(person.hair).expand_as(colors), colors)
        offsets = torch.where(neck_back, offsets + 0.03, offsets)
    # soft shading so the picture is not flat colour: darker towards the feet and on side-facing surfaces
    shade = 0.85 + 0.15 * n[:, 2].clamp(0, 1)
    colors = (colors * shade[:, None]).clamp(0, 1)

    means = p + offsets[:, None] * n
    # a surface pushed out spreads its samples apart (most on the skirt): widen the splats to match
    s = tpl.scale * (1 + offsets / 0.07)
    g = lhm.Gaussians(means, _align_z(n), torch.stack([s, s, 0.4 * s], -1), torch.full_like(s, 0.95), colors)
    return lhm.Avatar.from_canonical(space, body, g, betas=torch.tensor(person.betas + (0.0,) * 5)[: body.num_betas])


def render_person(person: Person, body: lhm.Body, crop: bool = False):
    """Render the person: the photo (RGB or RGBA uint8) or, with ``crop``, the exact LHM crop view.

    Returns (image [H,W,3|4] uint8, camera, full_pose [55,3], betas [B], transl [3]).
    """
    avatar = dress(person, body)
    pose = full_pose(person)
    transl = torch.zeros(3)
    with torch.no_grad():
        posed = avatar.pose(pose[None], trans=transl[None]).frame(0)
    yaw = math.radians(person.yaw_deg)
    width, height = CROP_SIZE if crop else person.size
    cam = frame_points(posed.means, width, height, direction=(math.sin(yaw), 0.0, math.cos(yaw)),
                       fov_y_deg=20.0, margin=0.05 if crop else 0.08)
    with torch.no_grad():
        out = lhm.render(posed, cam, background=0.0)
    alpha = out.alpha[..., 0].numpy()
    rgb = out.rgb.numpy()
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    bg_top = np.asarray(person.background, np.float32)
    bg_bottom = np.asarray(person.background2 or person.background, np.float32)
    bg = np.broadcast_to(bg_top * (1 - ys) + bg_bottom * ys, rgb.shape)
    if person.rgba and not crop:
        img = np.concatenate([rgb / np.maximum(alpha[..., None], 1e-6), alpha[..., None]], -1)
    else:
        img = rgb + (1 - alpha[..., None]) * bg
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), cam, pose, avatar.betas, transl


def _package_photos(out: Path) -> list[str]:
    """Copy scikit-image's public-domain/CC0 photos (absent package: skipped)."""
    try:
        import skimage
    except ImportError:
        print("scikit-image not installed: package photos skipped")
        return []
    data = Path(skimage.__file__).parent / "data"
    written = []
    for src, dst in (("astronaut.png", "astronaut.jpg"), ("camera.png", "cameraman.jpg")):
        im = Image.open(data / src).convert("RGB")
        im.save(out / dst, quality=90, optimize=True)
        written.append(dst)
    return written


def main(argv=None) -> int:
    """Write every example into ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="examples")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    body = lhm.load_body("free")
    for person in people():
        img, *_ = render_person(person, body)
        if person.rgba:
            path = out / f"{person.name}.png"
            Image.fromarray(img, "RGBA").save(path, optimize=True)
        else:
            path = out / f"{person.name}.jpg"
            buf = io.BytesIO()
            Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=90, optimize=True)
            path.write_bytes(buf.getvalue())
        print(f"wrote {path} ({path.stat().st_size // 1024} KB)")
    for name in _package_photos(out):
        print(f"wrote {out / name} ({(out / name).stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
