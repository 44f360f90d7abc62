"""The Fit engine: single-view Gaussian fitting on the fitted body, no learned weights.

Gaussians are sampled on the body in the canonical big pose with the fitted shape and posed to
the fitted pose, where each Gaussian is ``p + d * n``: its posed surface point plus a non-negative
offset ``d`` along the posed surface normal (one scalar per Gaussian, smoothed over canonical
neighbours, so clothing and hair grow out of the body as a smooth shell). Offsets, colours and
sizes are refined against the photo and its mask through the differentiable renderer (Adam,
coarse to fine). Gaussians the photo does not show (the back, under the arms) then take the
colour of the visible surface of the same body part at the same image location (the photo
"mirrored through the body"), else of the nearest visible Gaussian of that part, and a part the photo
does not show at all of the nearest shown part up the body's chain; the back of the head takes the
colour of the head's outline (hair), not the face's. A photo that cuts the person off (an upper-body
shot) gets its Gaussians picked sparser past the cut, denser where it shows the body.

Because posing is linear in the canonical point, the whole optimisation runs on one precomputed
affine map per Gaussian; the result is an ordinary :class:`~lhm.avatar.Avatar` whose canonical
points carry the offsets, so ``avatar.pose`` reproduces the fitted view exactly.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..avatar import Avatar
from ..body import Body, load_body, skeleton
from ..body.canonical import CanonicalSpace, big_pose, sample_surface
from ..errors import InputError
from ..gaussians import Gaussians
from ..geometry import axis_angle_to_matrix, batch_rigid_transform, quaternion_to_matrix
from ..preprocess.fit import silhouette_iou
from ..render import render
from ..render.camera import Camera
from ..threads import limited_threads

if TYPE_CHECKING:
    from ..preprocess.types import PersonImage

Progress = Callable[[float, str], None]

# body parts whose hidden side is filled from their own visible side; the head (with the neck) is
# left out of the mirror: the back of a head is hair, not a face, so it takes the colour of the
# head's outline in the photo instead
_PARTS = {
    "torso": ("pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar"),
    "head": ("neck", "head", "jaw", "left_eye", "right_eye"),
    "left_arm": ("left_shoulder", "left_elbow"),
    "right_arm": ("right_shoulder", "right_elbow"),
    "left_leg": ("left_hip", "left_knee"),
    "right_leg": ("right_hip", "right_knee"),
    "left_foot": ("left_ankle", "left_foot"),
    "right_foot": ("right_ankle", "right_foot"),
}
_HEAD_PART = list(_PARTS).index("head")
_LEFT_HAND, _RIGHT_HAND = len(_PARTS), len(_PARTS) + 1  # wrists and fingers
# the part each part hangs from: a part the photo does not show at all (legs below an upper-body photo's
# edge) continues the clothes of the nearest part up the chain that it does show
_PARENT_PART = [list(_PARTS).index(p) if p else -1 for p in (
    None, "torso", "torso", "torso", "torso", "torso", "left_leg", "right_leg", "left_arm", "right_arm")]
_OPACITY = 0.95
# the engine samples POOL times num_gaussians points on the body once; each photo picks num_gaussians of
# them, HIDDEN_DENSITY times as dense past a cut border of the photo (the legs below an upper-body photo)
# as elsewhere, so a portrait's Gaussians go where the photo shows detail
POOL = 2
HIDDEN_DENSITY = 0.25
_FLATNESS = 0.4  # thickness of a splat relative to its width: a shell that stays closed from the side
# visible fractions (see _visible_fraction): below _HIDDEN a Gaussian's colour is filled from the
# visible surface, above _SEEN it is the photo's, in between a blend; _VISIBLE marks "visible"
_HIDDEN, _VISIBLE, _SEEN = 0.06, 0.12, 0.2


@dataclass
class FitResult:
    """What :meth:`FitEngine.fit` found: the avatar and per-Gaussian diagnostics.

    offsets [N] metres along the surface normal (>= 0, at most the engine's bounds); visible [N]
    bool, seen in the photo; iou / psnr of the input view (PSNR in dB inside the mask); seconds.
    """

    avatar: Avatar
    offsets: torch.Tensor
    visible: torch.Tensor
    iou: float
    psnr: float
    seconds: float


@dataclass
class _Pool:
    """Per-engine constants: POOL times num_gaussians canonical samples, from which each photo picks its own."""

    space: CanonicalSpace
    normals: torch.Tensor  # [N,3] unit surface normals in the big pose
    part: torch.Tensor  # [N] body part index (see _PARTS, then the two hands)
    cap: torch.Tensor  # [N] offset bound (metres)
    rank: torch.Tensor  # [N] pick priority, uniform in [0, 1)


@dataclass
class _Template:
    """One photo's canonical samples (picked from the pool) and what depends only on them."""

    space: CanonicalSpace
    normals: torch.Tensor  # [N,3] unit surface normals in the big pose
    part: torch.Tensor  # [N] body part index (see _PARTS, then the two hands)
    neighbours: torch.Tensor  # [N,K] canonical nearest neighbours, self first
    scale: torch.Tensor  # [N] splat size from the local sample spacing (metres)
    cap: torch.Tensor  # [N] offset bound (metres)


class FitEngine:
    """Photo -> Avatar by fitting Gaussians on the fitted body (the offline default engine).

    num_gaussians: Gaussians on the body (sampled 75 % body, 25 % head, as LHM, then picked per
    photo: fewer past a cut border of the photo); device: where the refinement runs (CUDA when
    available by default); body: the body the fit refers to (default the free body); steps: Adam
    steps at 1/4, 1/2 and full crop resolution (12 at full resolution: with 8 the photo path ended
    1-2 dB lower, the fine colour detail unsettled); max_offset / max_head_offset: bounds of the
    outward offsets on the body and the head (hair) in metres; seed: sampling seed (results are
    deterministic for a given seed).
    """

    def __init__(self, num_gaussians: int = 40_000, device=None, body: Body | None = None,
                 steps: tuple[int, int, int] = (16, 12, 12), max_offset: float = 0.12,
                 max_head_offset: float = 0.20, seed: int = 0) -> None:
        if num_gaussians < 100:
            raise ValueError(f"num_gaussians must be at least 100, got {num_gaussians}")
        if len(steps) != 3 or min(steps) < 0:
            raise ValueError(f"steps must be three non-negative counts (1/4, 1/2, full resolution), got {steps}")
        self.num_gaussians = num_gaussians
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.body = body if body is not None else load_body("free")
        self.steps = tuple(int(s) for s in steps)
        self.max_offset = float(max_offset)
        self.max_head_offset = float(max_head_offset)
        self.seed = seed
        self._pool: _Pool | None = None
        self._template: _Template | None = None

    # ------------------------------------------------------------------------------------------
    def reconstruct_person(self, person: PersonImage, progress: Progress | None = None) -> Avatar:
        """The avatar of ``person``; ``avatar.info`` holds {"engine": "fit", "iou", "psnr"} of the input view."""
        return self.fit(person, progress).avatar

    def fit(self, person: PersonImage, progress: Progress | None = None) -> FitResult:
        """Like :meth:`reconstruct_person`, also returning offsets, visibility and input-view scores."""
        if self.device.type != "cpu":
            return self._fit(person, progress)
        # the renderer keeps its numba threads: its kernels are the large work here
        with limited_threads(torch_threads=1):
            return self._fit(person, progress)

    def _fit(self, person: PersonImage, progress: Progress | None) -> FitResult:
        t_start = time.perf_counter()
        report = progress or (lambda fraction, desc: None)
        report(0.0, "fit: preparing Gaussians")
        photo, mask, known, cam = _inputs(person)
        pool = self._get_pool()
        body = self.body
        fit = person.fit
        betas = body._betas(fit.betas.detach().float().cpu())
        # the rig poses the avatar the fit returns (colours aside): the result reproduces the fitted view
        n = len(pool.normals)
        unfitted = self._avatar(pool.space, pool.normals, torch.full((n,), 0.01), torch.zeros(n), torch.zeros(n, 3),
                                betas)
        rig = _Rig.build(unfitted, pool.normals, fit.full_pose.detach().float().cpu(),
                         fit.transl.detach().float().cpu())
        beyond = person.crop.beyond(cam.project(rig.base))
        idx = _pick(pool, beyond if beyond.any() else None, self.num_gaussians)
        tpl = _template(pool, idx) if beyond.any() else self._get_template()
        rig = rig.select(idx)
        dev = self.device
        tpl_d = _to(tpl, dev)
        rig = rig.to(dev)
        photo_d, mask_d, known_d = photo.to(dev), mask.to(dev), known.to(dev)

        colors0 = _sample_image(photo, cam.project(rig.base)).to(dev)
        state = _State(
            raw_offset=torch.zeros(len(rig.base), device=dev),
            colors=colors0,
            log_scale=torch.zeros(len(rig.base), device=dev),
        )
        total = max(1, sum(self.steps))
        done = 0
        for level, n_steps in zip((0.25, 0.5, 1.0), self.steps):
            if n_steps == 0:
                continue
            cam_l, target_l, mask_l, known_l = _level(cam, level, photo_d, mask_d, known_d)
            def tick(k, start=done, desc=f"fit: refining at {level:g}x"):
                report(0.05 + 0.75 * (start + k) / total, desc)

            done += self._refine(state, rig, tpl_d, cam_l, target_l, mask_l, known_l, n_steps, level, tick)
        report(0.85, "fit: filling hidden surfaces")
        with torch.no_grad():
            offsets = _offsets(state.raw_offset, tpl_d.neighbours, tpl_d.cap)
            gauss = _posed(rig, tpl_d, offsets, state.colors, state.log_scale)
            uv = cam.to(dev).project(gauss.means)
            # where the fitted body sticks out of the mask the refinement paints splats the
            # background's colour; they are filled from the person instead
            on_person = _sample_image(mask_d[..., None].expand(-1, -1, 3), uv)[:, 0] > 0.5
            seen = _visible_fraction(gauss, cam.to(dev)) * on_person
            view = F.normalize(cam.center.to(dev) - gauss.means, dim=-1)
            facing = (F.normalize(rig.direction, dim=-1) * view).sum(-1).abs()
            colors = _fill_hidden(state.colors, seen, facing, tpl_d, uv)
            visible = seen >= _VISIBLE
        avatar = self._avatar(tpl.space, tpl.normals, tpl.scale * state.log_scale.cpu().exp(), offsets.cpu(),
                              colors.cpu(), betas).to(dev)
        report(0.95, "fit: scoring the input view")
        with torch.no_grad():
            posed = avatar.pose(fit.full_pose[None].float().to(dev), trans=fit.transl[None].float().to(dev))
            out = render(posed.frame(0), cam.to(dev), background=1.0)
        iou, psnr = _scores(out.rgb.cpu(), out.alpha[..., 0].cpu(), photo, mask, known)
        avatar.info.update({"engine": "fit", "iou": iou, "psnr": psnr})
        report(1.0, "fit: done")
        return FitResult(avatar, offsets.cpu(), visible.cpu(), iou, psnr, time.perf_counter() - t_start)

    # ------------------------------------------------------------------------------------------
    def _refine(self, state: _State, rig: _Rig, tpl: _Template, cam: Camera,
                target: torch.Tensor, mask: torch.Tensor, known: torch.Tensor, n_steps: int, level: float,
                tick: Callable[[int], None]) -> int:
        """Adam on offsets, colours and sizes against the photo at one resolution (pixels beyond a cut border of
        the photo, ``known`` 0, left free); returns steps run."""
        params = [state.raw_offset, state.colors, state.log_scale]
        for p in params:
            p.requires_grad_(True)
        # coarse levels move the geometry, the full level mostly settles colours
        opt = torch.optim.Adam([
            {"params": [state.raw_offset], "lr": 0.006 * (0.25 / level) ** 0.5},
            {"params": [state.colors], "lr": 0.03},
            {"params": [state.log_scale], "lr": 0.03},
        ], betas=(0.8, 0.95))
        inside = mask > 0.5
        # a coarse image needs no more than every stride-th Gaussian (splats widened to close the
        # surface), which makes a coarse step several times cheaper; the shared offsets still move
        # every Gaussian through the neighbour smoothing
        stride = max(1, round(1 / level))
        for k in range(n_steps):
            opt.zero_grad(set_to_none=True)
            offsets = _offsets(state.raw_offset, tpl.neighbours, tpl.cap)
            g = _posed(rig, tpl, offsets, state.colors, state.log_scale)
            if stride > 1:
                g = g.select(slice(None, None, stride))
                g = g.replace(scales=g.scales * math.sqrt(stride))
            out = render(g, cam, background=1.0)
            rgb, alpha = out.rgb, out.alpha[..., 0]
            loss = ((rgb - target).abs() * known[..., None]).mean() + 2.0 * (known * (alpha - mask) ** 2).mean()
            # the person fills a fraction of the frame: an extra term inside the mask keeps its
            # colours from being outweighed by the easy background
            loss = loss + (rgb - target)[inside].abs().mean() * 0.5
            loss.backward()
            opt.step()
            with torch.no_grad():
                state.raw_offset.clamp_(0.0, None)
                torch.minimum(state.raw_offset, tpl.cap, out=state.raw_offset)
                state.colors.clamp_(0.0, 1.0)
                state.log_scale.clamp_(-0.7, 0.7)
            tick(k + 1)
        for p in params:
            p.requires_grad_(False)
        return n_steps

    def _get_pool(self) -> _Pool:
        if self._pool is None:
            self._pool = _make_pool(self.body, POOL * self.num_gaussians, self.seed, self.max_offset,
                                    self.max_head_offset)
        return self._pool

    def _get_template(self) -> _Template:
        """The template of a photo that shows the whole body: num_gaussians of the pool by rank, an even random
        half of it (cached)."""
        if self._template is None:
            self._template = _template(self._get_pool(), _pick(self._get_pool(), None, self.num_gaussians))
        return self._template

    def _avatar(self, space: CanonicalSpace, normals: torch.Tensor, s: torch.Tensor, offsets: torch.Tensor,
                colors: torch.Tensor, betas: torch.Tensor) -> Avatar:
        """Canonical Gaussians of width ``s`` carrying the offsets, flattened along the surface like skin."""
        means = space.points + offsets[:, None] * normals
        # canonical quaternions put each splat's thin axis (z) on the surface normal
        quats = _align_z(normals)
        scales = torch.stack([s, s, s * _FLATNESS], dim=-1)
        g = Gaussians(means, quats, scales, torch.full_like(s, _OPACITY), colors.clamp(0, 1))
        return Avatar.from_canonical(space, self.body, g, betas=betas.clone())


@dataclass
class _State:
    """What the refinement optimises: raw offsets (before smoothing), colours, log size factors."""

    raw_offset: torch.Tensor
    colors: torch.Tensor
    log_scale: torch.Tensor


@dataclass
class _Rig:
    """The fitted pose per Gaussian: posed = base + offset * direction (posing is affine in the canonical point).

    base [N,3] posed sample points, direction [N,3] posed image of the canonical normal (the
    displacement per metre of offset), quats [N,4] posed splat orientations.
    """

    base: torch.Tensor
    direction: torch.Tensor
    quats: torch.Tensor

    @classmethod
    def build(cls, avatar: Avatar, normals: torch.Tensor, full_pose: torch.Tensor, transl: torch.Tensor) -> _Rig:
        """The rig of ``avatar`` (Gaussians at zero offset) in ``full_pose`` [55,3] moved by ``transl`` [3].

        ``Avatar.pose`` is affine in the canonical point, so posing the Gaussians as they are and a
        metre out along their canonical ``normals`` [N,3] gives the base and the direction.
        """
        g = avatar.gaussians
        out = replace(avatar, gaussians=g.replace(means=g.means + normals))
        base, tip = (a.pose(full_pose[None], trans=transl[None]).frame(0) for a in (avatar, out))
        return cls(base.means, tip.means - base.means, base.quats)

    def to(self, device) -> _Rig:
        return _Rig(self.base.to(device), self.direction.to(device), self.quats.to(device))

    def select(self, idx: torch.Tensor) -> _Rig:
        return _Rig(self.base[idx], self.direction[idx], self.quats[idx])


def _make_pool(body: Body, n: int, seed: int, max_offset: float, max_head_offset: float) -> _Pool:
    """What depends only on the body and the sampling: samples, normals, parts, caps and pick priorities."""
    samples = sample_surface(body, n, seed=seed)
    space = CanonicalSpace.from_samples(body, samples)
    # rest-pose vertex normals, carried to the big pose by each sample's skinning rotation
    v, f = body.vertices.double(), body.faces
    fn = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = torch.zeros_like(v).index_add_(0, f.reshape(-1), fn.repeat_interleave(3, dim=0))
    rest_n = F.normalize(vn, dim=-1)[samples.vertex_index].float()
    _, A = batch_rigid_transform(axis_angle_to_matrix(big_pose()), body.joints, skeleton.PARENTS)
    R = torch.einsum("nj,jab->nab", space.weights, A[:, :3, :3])
    normals = F.normalize((R @ rest_n[..., None])[..., 0], dim=-1)

    names = list(skeleton.JOINT_NAMES)
    joint_part = torch.empty(skeleton.NUM_JOINTS, dtype=torch.long)
    for i, joints in enumerate(_PARTS.values()):
        for name in joints:
            joint_part[names.index(name)] = i
    # SMPL-X order: the wrists, then 15 left and 15 right finger joints
    joint_part[[names.index("left_wrist")] + list(range(25, 40))] = _LEFT_HAND
    joint_part[[names.index("right_wrist")] + list(range(40, 55))] = _RIGHT_HAND
    part = joint_part[space.weights.argmax(dim=1)]
    cap = torch.where(part == _HEAD_PART, max_head_offset, max_offset).float()
    rank = torch.rand(n, generator=torch.Generator().manual_seed(seed + 1))
    return _Pool(space, normals, part, cap, rank)


def _pick(pool: _Pool, beyond: torch.Tensor | None, n: int) -> torch.Tensor:
    """Sorted indices of ``n`` pool samples, sparser (HIDDEN_DENSITY) where ``beyond`` [N] (past the photo)."""
    priority = pool.rank if beyond is None else pool.rank / torch.where(beyond.cpu(), HIDDEN_DENSITY, 1.0)
    return torch.sort(torch.argsort(priority)[:n]).values


def _template(pool: _Pool, idx: torch.Tensor) -> _Template:
    """The template of the pool samples ``idx`` (sorted: body samples stay before head samples)."""
    from scipy.spatial import cKDTree

    s = pool.space
    space = CanonicalSpace(s.points[idx], s.weights[idx], s.shapedirs[idx], s.neutral_transforms,
                           int((idx < s.num_body).sum()))
    pts = space.points.double().numpy()
    # the splat size follows the mean distance to 16 neighbours: a random sample's nearest
    # neighbours are often much closer than its typical spacing, and splats sized on them leave holes
    dist, near = cKDTree(pts).query(pts, k=17)
    scale = torch.from_numpy(0.4 * dist[:, 1:].mean(axis=1)).float().clamp(0.0015, 0.02)
    return _Template(space, pool.normals[idx], pool.part[idx], torch.from_numpy(near[:, :9]).long(), scale,
                     pool.cap[idx])


def _make_template(body: Body, n: int, seed: int, max_offset: float, max_head_offset: float) -> _Template:
    """A template of ``n`` samples spread evenly over the body (the synthetic examples are made from one)."""
    return _template(_make_pool(body, n, seed, max_offset, max_head_offset), torch.arange(n))


def _to(tpl: _Template, device) -> _Template:
    if tpl.normals.device == torch.device(device):
        return tpl
    return _Template(tpl.space, tpl.normals.to(device), tpl.part.to(device), tpl.neighbours.to(device),
                     tpl.scale.to(device), tpl.cap.to(device))


def _offsets(raw: torch.Tensor, neighbours: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """Smoothed, bounded offsets: two neighbour averages of the raw values, then the per-Gaussian cap."""
    d = raw[neighbours].mean(dim=1)
    return torch.minimum(d[neighbours].mean(dim=1), cap)


def _posed(rig: _Rig, tpl: _Template, offsets: torch.Tensor, colors: torch.Tensor,
           log_scale: torch.Tensor) -> Gaussians:
    s = tpl.scale * log_scale.exp()
    return Gaussians(rig.base + offsets[:, None] * rig.direction, rig.quats,
                     torch.stack([s, s, s * _FLATNESS], dim=-1), torch.full_like(s, _OPACITY), colors)


def _align_z(normals: torch.Tensor) -> torch.Tensor:
    """Unit quaternions (w-first) rotating +z onto each normal."""
    z = torch.zeros_like(normals)
    z[:, 2] = 1.0
    w = 1.0 + (normals * z).sum(-1, keepdim=True)
    q = torch.cat([w, torch.linalg.cross(z, normals)], dim=-1)
    # opposite normals: any half turn about an axis orthogonal to z
    flip = w[:, 0] < 1e-6
    q[flip] = torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=q.dtype, device=q.device)
    return F.normalize(q, dim=-1)


def _inputs(person: PersonImage) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, Camera]:
    """The crop's photo on white, its mask, its known pixels (``PersonCrop.known``) as float, and the camera."""
    crop, fit = person.crop, person.fit
    rgb = np.asarray(crop.rgb, dtype=np.float32)
    mask = np.asarray(crop.mask, dtype=np.float32)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or mask.shape != rgb.shape[:2]:
        raise InputError(f"the person crop must be RGB [H,W,3] with a mask [H,W], got {rgb.shape} and {mask.shape}")
    cam = fit.camera
    if cam.batch_shape or (cam.height, cam.width) != rgb.shape[:2]:
        raise InputError(f"the fitted camera ({cam.width}x{cam.height}) does not match the crop "
                         f"({rgb.shape[1]}x{rgb.shape[0]})")
    if mask.max() <= 0.5:
        raise InputError("the person mask is empty: no person to reconstruct")
    m = torch.from_numpy(mask).clamp(0, 1)
    # the photo outside the person is replaced by the white background the avatar is rendered on
    photo = torch.from_numpy(rgb).clamp(0, 1) * m[..., None] + (1 - m[..., None])
    known = torch.from_numpy(crop.known().astype(np.float32))
    return photo, m, known, Camera(cam.K.float().cpu(), cam.viewmat.float().cpu(), cam.width, cam.height)


def _level(cam: Camera, level: float, photo: torch.Tensor, *maps: torch.Tensor):
    """Camera, photo [H,W,3] and single-channel maps [H,W] at ``level`` times the crop resolution."""
    if level == 1.0:
        return cam.to(photo.device), photo, *maps
    h, w = max(8, round(cam.height * level)), max(8, round(cam.width * level))
    both = torch.cat([photo, *(m[..., None] for m in maps)], dim=-1).permute(2, 0, 1)[None]
    small = F.interpolate(both, size=(h, w), mode="area")[0].permute(1, 2, 0)
    return cam.scaled(h, w).to(photo.device), small[..., :3].contiguous(), *small[..., 3:].unbind(-1)


def _sample_image(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear colours [N,3] of ``image`` [H,W,3] at pixel coordinates [N,2] (border-clamped)."""
    H, W = image.shape[:2]
    grid = torch.stack([uv[:, 0] / W * 2 - 1, uv[:, 1] / H * 2 - 1], dim=-1).to(image)
    out = F.grid_sample(image.permute(2, 0, 1)[None], grid[None, :, None], mode="bilinear",
                        padding_mode="border", align_corners=False)
    return out[0, :, :, 0].T.contiguous()


def _visible_fraction(gauss: Gaussians, cam: Camera) -> torch.Tensor:
    """How much of each Gaussian the image shows, ~0 (hidden) to ~0.4 (front-facing, unoccluded).

    The colour gradient of the summed render is each Gaussian's total blending weight; it is
    divided by the weight of the unoccluded splat (opacity x projected area, foreshortened). The
    front surface stays below 1 because neighbouring splats of one surface overlap.
    """
    colors = torch.zeros_like(gauss.means, requires_grad=True)
    with torch.enable_grad():
        out = render(gauss.replace(colors=colors), cam, background=0.0)
        out.rgb[..., 0].sum().backward()
    weight = colors.grad[:, 0]
    z = cam.world_to_camera(gauss.means)[:, 2].clamp_min(1e-3)
    f = float(cam.K[0, 0])
    s = gauss.scales[:, :2].mean(-1)
    normal = quaternion_to_matrix(gauss.quats)[:, :, 2]
    view = F.normalize(cam.center.to(gauss.means) - gauss.means, dim=-1)
    tilt = (normal * view).sum(-1).abs().clamp_min(_FLATNESS)
    footprint = 2 * math.pi * (f * s / z) ** 2 * tilt * gauss.opacities
    return weight / footprint.clamp_min(0.5)


def _fill_hidden(colors: torch.Tensor, seen: torch.Tensor, facing: torch.Tensor, tpl: _Template,
                 uv: torch.Tensor) -> torch.Tensor:
    """Colours for what the photo does not show, from what it shows well (``seen`` = visible fraction,
    ``facing`` = |cos| between the posed normal and the view ray, ``uv`` = pixel coordinates).

    Per body part (not the head): the well-seen Gaussian of the same part at the nearest image
    position, i.e. the front seen through the body; where that part is covered in the photo (an arm
    in front of the torso), the nearest well-seen Gaussian of the part in 3D, and for a part not seen
    at all, of the nearest part up the body's chain that is (legs below the photo's edge continue the
    torso's clothes). The back of the head
    takes the nearest colour of the head's outline in the photo (hair, ears), never the face. A few
    neighbour averages over the filled Gaussians hide the seams of that choice; partly seen
    Gaussians (grazing the silhouette) blend their own colour with the filled one.
    """
    from scipy.spatial import cKDTree

    frac = seen.cpu().numpy()
    src_ok = frac >= _SEEN
    fill = frac < _SEEN
    if not fill.any() or not src_ok.any():
        return colors.clone()
    part = tpl.part.cpu().numpy()
    uv = uv.cpu().double().numpy()
    pts = tpl.space.points.double().numpy()
    col = colors.cpu().numpy()
    # parts are kept apart by an offset far larger than any image or body distance
    sep = 1e6
    src = np.full(len(part), -1)
    ids_ok = np.flatnonzero(src_ok)
    # a mirror match must be about one sample spacing away in the image
    spacing_px = np.median(cKDTree(uv[src_ok]).query(uv[src_ok], k=2)[0][:, 1]) if len(ids_ok) > 1 else 1.0
    mirror = np.flatnonzero(fill & (part != _HEAD_PART))
    if len(mirror):
        d, j = cKDTree(np.c_[uv[src_ok], part[src_ok] * sep]).query(np.c_[uv[mirror], part[mirror] * sep])
        ok = d < 3.0 * spacing_px
        src[mirror[ok]] = ids_ok[j[ok]]
    head = np.flatnonzero(fill & (part == _HEAD_PART))
    outline = np.flatnonzero(src_ok & (part == _HEAD_PART) & (facing.cpu().numpy() < 0.5))
    if len(head) and len(outline):
        _, j = cKDTree(pts[outline]).query(pts[head])
        src[head] = outline[j]
    rest = np.flatnonzero(fill & (src < 0))
    if len(rest):
        # a part with nothing seen takes the nearest seen colours of the first part up the chain with some,
        # and of any part when no such part exists
        shown = np.zeros(len(_PARENT_PART), bool)
        shown[np.unique(part[src_ok])] = True
        donor = np.arange(len(_PARENT_PART))
        for _ in range(len(_PARENT_PART)):
            donor = np.where(shown[donor] | (donor < 0), donor, np.take(_PARENT_PART, donor))
        query = donor[part[rest]]
        anywhere = query < 0
        _, j = cKDTree(np.c_[pts[src_ok], part[src_ok] * sep]).query(np.c_[pts[rest], query * sep])
        if anywhere.any():
            _, j[anywhere] = cKDTree(pts[src_ok]).query(pts[rest[anywhere]])
        src[rest] = ids_ok[j]
    ids = np.flatnonzero(fill)
    filled = col.copy()
    filled[ids] = col[src[ids]]
    nb = tpl.neighbours.cpu().numpy()[ids]
    for _ in range(4):
        filled[ids] = filled[nb].mean(axis=1)
    t = np.clip((frac - _HIDDEN) / (_SEEN - _HIDDEN), 0.0, 1.0)[:, None]
    return torch.from_numpy(t * col + (1 - t) * filled).to(colors)


def _scores(rgb: torch.Tensor, alpha: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor,
            known: torch.Tensor) -> tuple[float, float]:
    """Silhouette IoU over the known pixels and PSNR (dB) inside the mask of a render against the photo."""
    iou = silhouette_iou(alpha.numpy(), mask.numpy(), known.numpy() > 0.5)
    m = mask > 0.5
    mse = float(((rgb - photo) ** 2)[m].mean()) if m.any() else 0.0
    psnr = 10 * math.log10(1.0 / max(mse, 1e-10))
    return iou, psnr
