"""Fit the body to the person's silhouette in the crop, through our differentiable Gaussian renderer.

Camera: a fixed centred pinhole on the crop with focal ``max(H,W) / (2 tan 30 deg)`` (the field of
view LHM motions use: 60 degrees across the crop's long side), at the world origin, looking along
the body's -z (world = the body frame: y up, metres; the body faces +z, towards the camera). The
person is assumed to face the camera: a back view fits as a (mirrored) front view.

Parameters: root orientation, translation, the body's shape coefficients (L2-regularised) and
the rotations of the main joints (spine, neck, head, collars, shoulders, elbows, hips, knees),
starting from a standing A-pose whose arm elevations are first picked from a few candidates
(gradients cannot swing an arm overhead); every other joint stays at zero. Priors keep the pose human:
L2 towards the start (stronger on the legs' twist and the knees' sideways bend), a penalty outside
the joint ranges of ``lhm.motion.limits``, and a depth prior: the camera depth of the knees, ankles,
feet, neck, head, elbows and wrists relative to the pelvis stays near the start pose's, so limbs
swing along the view ray (and the body pitches towards the camera) only where the silhouette
demands it, not to absorb outline mismatches (clothes, hair, body shape).

Losses: the rendered alpha of a few thousand small opaque Gaussians on the body against the mask
(L2), plus a 2D chamfer between the projected body points and the mask (distance transform one
way, nearest point the other) that pulls far-off limbs in where the alpha term has no gradient.
Coarse to fine: 60x36 then 120x72 then 200x120 silhouettes.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from ..body import Body, skeleton
from ..gaussians import Gaussians
from ..geometry import axis_angle_to_matrix, batch_rigid_transform
from ..motion.limits import limit_table
from ..render import render
from ..render.camera import Camera
from ..threads import limited_threads
from .image import long_side_size
from .types import BodyFit, PersonCrop

J = skeleton.JOINT_INDEX
FIT_JOINTS = tuple(J[n] for n in (
    "spine1", "spine2", "spine3", "neck", "head", "left_collar", "right_collar", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_hip", "right_hip", "left_knee", "right_knee"))
START_ARM_DROP_DEG = 60.0  # the start pose's arms: 60 degrees below horizontal
FOV_LONG_SIDE_DEG = 60.0
SPLAT_SIGMA = 0.015  # metres: isotropic Gaussians on body points
POINT_SPACING = 0.04  # metres: one body point per voxel of this size
# (silhouette height, share of the Adam steps) per coarse-to-fine stage
STAGES = ((60, 0.45), (120, 0.35), (200, 0.2))
DEFAULT_STEPS = 80
# left-shoulder elevations (degrees from horizontal, about +z) the arms may start from
ARM_CANDIDATES_DEG = (-START_ARM_DROP_DEG, -25.0, 15.0, 55.0)
# shares of the body's height that a photo cut off at one end may show, from the other end: from the head,
# whole, to the knees, hips, waist or chest (from the feet, the same heights counted upwards)
VISIBLE_SHARES = (1.0, 0.75, 0.55, 0.42, 0.32)
_FG_GRID = (80, 48)  # the grid of mask outline pixels the chamfer term covers
# prior weights, per radian squared of each joint's rotation away from the start pose
_PRIOR = {"spine1": 1.0, "spine2": 1.0, "spine3": 1.0, "neck": 1.0, "head": 0.5, "left_collar": 4.0,
          "right_collar": 4.0, "left_shoulder": 0.05, "right_shoulder": 0.05, "left_elbow": 0.1,
          "right_elbow": 0.1, "left_hip": 0.2, "right_hip": 0.2, "left_knee": 0.2, "right_knee": 0.2}
LIMIT_WEIGHT = 100.0  # per radian squared outside a joint's range: at 1 the fit could end a degree out
# extra prior weight on the hips' and knees' twist (about the bone, y) and the knees' sideways bend
# (z): a straight leg's silhouette hardly shows them, and the fit twisted the knees by 10-20 degrees
# to nudge the feet's outline
LEG_TWIST_PRIOR = 20.0
# joints whose camera depth (relative to the pelvis) is held near the start pose's, with weights per
# metre squared: a silhouette barely sees a limb swing along the view ray, so without this the fit
# used flexion in depth to absorb outline mismatches of clothes, hair and shape (legs leaning
# forwards or backwards from the side, arms swung 20-40 cm behind the body, shortening them in the
# image, so that the hands went uncovered and cost the photo path 2-5 dB)
LEG_DEPTH_WEIGHT = 0.3
ARM_DEPTH_WEIGHT = 0.1
DEPTH_JOINTS = {"left_knee": "leg", "right_knee": "leg", "left_ankle": "leg", "right_ankle": "leg",
                "left_foot": "leg", "right_foot": "leg", "neck": "leg", "head": "leg",
                "left_elbow": "arm", "right_elbow": "arm", "left_wrist": "arm", "right_wrist": "arm"}


def start_pose() -> torch.Tensor:
    """The standing A-pose [55,3] the fit starts from (arms 60 degrees below horizontal)."""
    pose = torch.zeros(skeleton.NUM_JOINTS, 3)
    drop = math.radians(START_ARM_DROP_DEG)
    pose[J["left_shoulder"], 2] = -drop  # the left arm (+x) comes down with -z
    pose[J["right_shoulder"], 2] = drop
    return pose


def crop_camera(height: int, width: int) -> Camera:
    """The fixed fitting camera of a crop: centred pinhole, 60 degrees across the long side, world = body frame."""
    focal = max(height, width) / (2.0 * math.tan(math.radians(FOV_LONG_SIDE_DEG / 2)))
    K = Camera.intrinsics(width, height, focal=focal)
    return Camera(K, torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0])), width, height)


def _body_points(body: Body) -> torch.Tensor:
    """Indices of body vertices, one per POINT_SPACING voxel (deterministic, even over the surface)."""
    v = body.vertices.detach().double()
    cells = torch.floor((v - v.amin(0)) / POINT_SPACING).long()
    key = (cells[:, 0] * 4096 + cells[:, 1]) * 4096 + cells[:, 2]
    # the vertex nearest each occupied voxel's centre
    centre_dist = ((v - v.amin(0)) / POINT_SPACING - cells - 0.5).norm(dim=1)
    order = torch.argsort(key * 4.0 + centre_dist / 2.0, stable=True)
    first = torch.ones_like(order, dtype=torch.bool)
    first[1:] = key[order[1:]] != key[order[:-1]]
    return torch.sort(order[first]).values


class _Model:
    """The body restricted to the fitted points, posed by linear blend skinning."""

    def __init__(self, body: Body, idx: torch.Tensor):
        self.body = body
        self.weights = body.weights[idx]
        self.vertices = body.vertices[idx]
        self.shapedirs = body.shapedirs[idx]

    def pose(self, full_pose: torch.Tensor, betas: torch.Tensor, transl: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posed points [N,3] and joints [55,3]."""
        joints, A = batch_rigid_transform(axis_angle_to_matrix(full_pose), self.body.shaped_joints(betas),
                                          skeleton.PARENTS)
        T = torch.einsum("vj,jab->vab", self.weights, A)
        v = self.vertices + torch.einsum("vcb,b->vc", self.shapedirs, betas)
        pts = (T[:, :3, :3] @ v[:, :, None])[:, :, 0] + T[:, :3, 3]
        return pts + transl, joints + transl

    def joints(self, full_pose: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
        """Posed joints [55,3] without translation (no points: the cheap part of ``pose``)."""
        return batch_rigid_transform(axis_angle_to_matrix(full_pose), self.body.shaped_joints(betas),
                                     skeleton.PARENTS)[0]


def _splats(means: torch.Tensor) -> Gaussians:
    n = means.shape[0]
    return Gaussians(means, means.new_tensor([1.0, 0.0, 0.0, 0.0]).expand(n, 4),
                     means.new_full((n, 3), SPLAT_SIGMA), means.new_ones(n), means.new_ones(n, 3))


def _limit_penalty(full_pose: torch.Tensor, table: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
    """Squared excess (radians) of the fitted joints' rotation vectors over their boxed ranges."""
    p = full_pose[list(FIT_JOINTS)]
    p = torch.where(right[:, None], p * p.new_tensor([1.0, -1.0, -1.0]), p)
    lim = table[list(FIT_JOINTS)]
    excess = torch.relu(lim[..., 0] - p) + torch.relu(p - lim[..., 1])
    return excess.square().sum()


def _targets(crop: PersonCrop, height: int, width: int):
    """Mask, distance to the person and the person's outline at ``height`` x ``width``, and the known pixels.

    Beyond a cut border (the photo ends, the person goes on) the crop is padding: there the distance is 0
    (the person may be there) and the photo's border is not part of the outline.
    """
    m = cv2.resize(crop.mask.astype(np.float32), (width, height), interpolation=cv2.INTER_AREA)
    known = crop.known(height, width)
    inside = m >= 0.5
    # distance (in units of the image height) from each pixel to the person, for points outside
    dist = cv2.distanceTransform((~inside & known).astype(np.uint8), cv2.DIST_L2, 3) / height
    solid = np.pad((inside | ~known).astype(np.uint8), 1)
    for side, edge in (("top", solid[0]), ("bottom", solid[-1]), ("left", solid[:, 0]), ("right", solid[:, -1])):
        if side in crop.cut:
            edge[:] = 1
    eroded = cv2.erode(solid, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)[1:-1, 1:-1]
    ys, xs = np.nonzero(inside & (eroded == 0))
    fg = np.stack([(xs + 0.5) / width, (ys + 0.5) / height], axis=1).astype(np.float32)
    return (torch.from_numpy(m), torch.from_numpy(dist.astype(np.float32)), torch.from_numpy(fg),
            torch.from_numpy(known.astype(np.float32)))


def _chamfer(uv: torch.Tensor, dist: torch.Tensor, outline: torch.Tensor, crop: PersonCrop) -> torch.Tensor:
    """Mean squared distance of points outside the mask to it, plus of the mask outline to the nearest point.

    uv [N,2] and outline [M,2] in image fractions; dist: the mask's distance transform (image heights);
    points past a cut border of ``crop``'s photo cost nothing.
    """
    outside = F.grid_sample(dist[None, None], (uv * 2 - 1)[None, None], align_corners=False,
                            padding_mode="border")[0, 0, 0]
    free = crop.beyond(uv.detach() * uv.new_tensor(crop.mask.shape[::-1]))
    outside = torch.where(free, torch.zeros_like(outside), outside)
    # nearest point chosen without gradient: a dense cdist backward is slow
    with torch.no_grad():
        nearest = torch.cdist(outline, uv).argmin(1)
    return outside.square().mean() + (outline - uv[nearest]).square().sum(1).mean()


def _choose_arms(model: _Model, pose: torch.Tensor, transl: torch.Tensor, camera: Camera,
                 dist: torch.Tensor, outline: torch.Tensor, crop: PersonCrop) -> torch.Tensor:
    """The start pose with each arm's elevation picked from ARM_CANDIDATES_DEG by the chamfer term.

    Gradients cannot swing an arm from the side to overhead (the way passes through background),
    so the arms start from the best of a few elevations, tried in all combinations.
    """
    size = torch.tensor([camera.width, camera.height], dtype=torch.float32)
    betas = torch.zeros(model.shapedirs.shape[-1])
    best, best_cost = pose, math.inf
    for left in ARM_CANDIDATES_DEG:
        for right in ARM_CANDIDATES_DEG:
            cand = pose.clone()
            cand[J["left_shoulder"], 2] = math.radians(left)
            cand[J["right_shoulder"], 2] = -math.radians(right)
            pts, _ = model.pose(cand, betas, transl)
            cost = float(_chamfer(camera.project(pts) / size, dist, outline, crop))
            if cost < best_cost:
                best, best_cost = cand, cost
    return best


def _choose_start(model: _Model, crop: PersonCrop, camera: Camera,
                  outline: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Start pose and translation: for a person cut off at the bottom (or the top) of the photo, how much of the
    body it shows from the head down (or the feet up), from VISIBLE_SHARES by the start pose's coarse fitting
    loss; then the arms as ``_choose_arms`` picks them. A photo that ends at the waist would otherwise get a
    whole standing body squeezed into it.
    """
    coarse = camera.scaled(STAGES[0][0])
    target, dist, _, known = _targets(crop, coarse.height, coarse.width)
    size = torch.tensor([coarse.width, coarse.height], dtype=torch.float32)
    betas = torch.zeros(model.shapedirs.shape[-1])

    def cost(transl: torch.Tensor) -> float:
        pts, _ = model.pose(start_pose(), betas, transl)
        alpha = render(_splats(pts), coarse, 0.0).alpha[..., 0]
        return float((known * (alpha - target).square()).mean()
                     + 10.0 * _chamfer(coarse.project(pts) / size, dist, outline, crop))

    # a photo cut at one end shows the body from the other end; cut at both, it cannot say how much
    from_top = "top" not in crop.cut
    shares = VISIBLE_SHARES if ("bottom" in crop.cut) != ("top" in crop.cut) else (1.0,)
    placements = [_initial_transl(model, start_pose(), betas, camera, crop.mask, share, from_top) for share in shares]
    transl = min(placements, key=cost) if len(placements) > 1 else placements[0]
    return _choose_arms(model, start_pose(), transl, coarse, dist, outline, crop), transl


def _initial_transl(model: _Model, pose: torch.Tensor, betas: torch.Tensor, camera: Camera,
                    mask: np.ndarray, share: float = 1.0, from_top: bool = True) -> torch.Tensor:
    """Translation that puts the top of the start pose at the top of the mask box (its feet at the bottom when
    not ``from_top``), centred across it, with that end's ``share`` of the body's height spanning the box's
    height (pinhole, analytic)."""
    ys, xs = np.nonzero(mask >= 0.5)
    pts, _ = model.pose(pose, betas, torch.zeros(3))
    lo, hi = pts.amin(0), pts.amax(0)
    f = float(camera.K[1, 1])
    depth = f * share * float(hi[1] - lo[1]) / max(float(ys.max() - ys.min() + 1), 1.0)
    u = (xs.min() + xs.max() + 1) / 2.0 - float(camera.K[0, 2])
    v = (ys.min() if from_top else ys.max() + 1) - float(camera.K[1, 2])
    # the camera looks along -z from the origin: image right is +x, image down is -y
    end = torch.tensor([u * depth / f, -v * depth / f, -depth], dtype=torch.float32)
    return end - torch.stack([(lo[0] + hi[0]) / 2, hi[1] if from_top else lo[1], (lo[2] + hi[2]) / 2])


def silhouette_iou(rendered: np.ndarray, mask: np.ndarray, known: np.ndarray | None = None) -> float:
    """IoU of two silhouettes thresholded at 0.5, over the ``known`` pixels (default: all)."""
    a, b = rendered >= 0.5, mask >= 0.5
    if known is not None:
        a, b = a & known, b & known
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _photo_K(camera: Camera, crop: PersonCrop) -> torch.Tensor:
    """The crop camera's intrinsics in photo pixels: ``x_img = box[0] + x_crop / scale``."""
    K = camera.K.clone()
    K[:2] /= crop.scale
    K[0, 2] += crop.box[0]
    K[1, 2] += crop.box[1]
    return K


def body_silhouette(fit: BodyFit, crop: PersonCrop, body: Body, image_size: tuple[int, int],
                    max_side: int) -> np.ndarray:
    """The fitted body's alpha over the whole photo (of ``image_size`` (H, W)), its long side at most ``max_side``."""
    width, height = long_side_size(image_size[1], image_size[0], max_side)
    photo = Camera(_photo_K(fit.camera, crop), fit.camera.viewmat, image_size[1], image_size[0])
    body = body.to(torch.float32)
    with torch.no_grad():
        posed = body.pose(fit.full_pose.float(), fit.betas.float(), fit.transl.float())
        return render(_splats(posed.vertices), photo.scaled(height, width), 0.0).alpha[..., 0].numpy()


def recrop(fit: BodyFit, old: PersonCrop, new: PersonCrop, body: Body) -> BodyFit:
    """``fit`` (made on crop ``old``) carried to the crop ``new`` of the same photo, to start ``fit_body`` from.

    The pelvis keeps its place in the photo and its depth scales with the focal length in photo pixels, so the
    body covers the same pixels (up to the perspective of its own depth, which is small).
    """
    camera = crop_camera(*new.mask.shape)
    K_old, K_new = _photo_K(fit.camera, old), _photo_K(camera, new)
    with torch.no_grad():
        pelvis = body.to(torch.float32).pose(fit.full_pose.float(), fit.betas.float(), fit.transl.float()).joints[0]
    c = fit.camera.world_to_camera(pelvis[None])[0]
    u = K_old[:2, :2] @ (c[:2] / c[2]) + K_old[:2, 2]  # photo pixels
    depth = c[2] * K_new[1, 1] / K_old[1, 1]
    xy = torch.linalg.solve(K_new[:2, :2], u - K_new[:2, 2]) * depth
    moved = torch.linalg.solve(camera.viewmat[:3, :3], torch.cat([xy, depth[None]]) - camera.viewmat[:3, 3])
    x0, y0, x1, y1 = fit.head_box
    to_new = lambda x, axis: (old.box[axis] + x / old.scale - new.box[axis]) * new.scale
    return BodyFit(camera=camera, full_pose=fit.full_pose.clone(), betas=fit.betas.clone(),
                   transl=fit.transl + (moved - pelvis), iou=fit.iou,
                   head_box=(to_new(x0, 0), to_new(y0, 1), to_new(x1, 0), to_new(y1, 1)))


def fit_body(crop: PersonCrop, body: Body, *, steps: int | None = None,
             progress: Callable[[float, str], None] | None = None, init: BodyFit | None = None) -> BodyFit:
    """Fit the body's pose, shape and placement to the crop's silhouette (Adam on CPU, a few seconds).

    Returns the crop's fixed camera, full_pose [55,3] (root and the main joints fitted, others 0),
    betas [B], transl [3], the head box in crop pixels (the posed head projected, made square) and
    the silhouette IoU of the final fit at the crop resolution (alpha and mask thresholded at 0.5).
    ``steps`` is the total number of Adam steps (default 80); ``progress(fraction, desc)`` is called
    once per stage and at the end. ``init``: a fit of this crop to start from (e.g. ``recrop`` of a fit of
    the same photo on a rougher mask), refined at the finer stages only (default 40 steps), with the joint
    priors centred on its pose (root rotation and shape stay regularised towards zero, as in a first
    fit). Runs single-threaded (see ``lhm.threads.limited_threads``), so results do not depend on the
    thread settings.
    """
    default = DEFAULT_STEPS if init is None else DEFAULT_STEPS // 2
    with limited_threads(torch_threads=1, numba_threads=1):
        return _fit(crop, body, default if steps is None else steps, progress, init)


def _fit(crop: PersonCrop, body: Body, steps: int, progress, init: BodyFit | None) -> BodyFit:
    H, W = crop.mask.shape
    camera = crop_camera(H, W)
    body = body.to(torch.float32)
    model = _Model(body, _body_points(body))
    outline = _targets(crop, *_FG_GRID)[2]
    if init is None:
        with torch.no_grad():
            start, transl0 = _choose_start(model, crop, camera, outline)
        betas0, stages = torch.zeros(body.num_betas), STAGES
    else:
        start, transl0, betas0 = init.full_pose.float(), init.transl.float(), init.betas.float()
        stages = tuple((h, share / (1.0 - STAGES[0][1])) for h, share in STAGES[1:])

    root = start[0].clone().requires_grad_(True)
    transl = transl0.clone().requires_grad_(True)
    betas = betas0.clone().requires_grad_(True)
    delta = torch.zeros(len(FIT_JOINTS), 3, requires_grad=True)
    opt = torch.optim.Adam([{"params": [root], "lr": 0.02}, {"params": [transl], "lr": 0.01},
                            {"params": [betas], "lr": 0.05}, {"params": [delta], "lr": 0.04}])
    fit_idx = torch.tensor(FIT_JOINTS)
    prior_w = torch.tensor([_PRIOR[skeleton.JOINT_NAMES[j]] for j in FIT_JOINTS])[:, None].repeat(1, 3)
    legs = torch.tensor([skeleton.JOINT_NAMES[j].endswith(("_hip", "_knee")) for j in FIT_JOINTS])
    prior_w[legs, 1] *= LEG_TWIST_PRIOR
    knees = torch.tensor([skeleton.JOINT_NAMES[j].endswith("_knee") for j in FIT_JOINTS])
    prior_w[knees, 2] *= LEG_TWIST_PRIOR
    table = torch.deg2rad(limit_table())
    right = torch.tensor([skeleton.JOINT_NAMES[j].startswith("right_") for j in FIT_JOINTS])
    depth_idx = torch.tensor([J[n] for n in DEPTH_JOINTS])
    depth_w = torch.tensor([LEG_DEPTH_WEIGHT if k == "leg" else ARM_DEPTH_WEIGHT for k in DEPTH_JOINTS.values()])
    view_dir = camera.viewmat[2, :3].float()  # world direction of camera depth

    def depth_change(pose: torch.Tensor, joints: torch.Tensor) -> torch.Tensor:
        """Camera depth of DEPTH_JOINTS relative to the pelvis, minus the start pose's turned by the
        root's yaw and roll only: pitching the whole body towards the camera is a depth lean too."""
        ref = model.joints(torch.cat([pose[:1] * pose.new_tensor([0.0, 1.0, 1.0]), start[1:]]), betas)
        return ((joints - joints[:1]) - (ref - ref[:1]))[depth_idx] @ view_dir

    def full_pose() -> torch.Tensor:
        pose = start.index_add(0, fit_idx, delta)
        return torch.cat([root[None], pose[1:]])

    done, total = 0, max(steps, 1)
    for s, (h, share) in enumerate(stages):
        cam = camera.scaled(h)
        target, dist, _, known = _targets(crop, cam.height, cam.width)
        size = torch.tensor([cam.width, cam.height], dtype=torch.float32)
        stage_steps = round(steps * share) if s < len(stages) - 1 else steps - done
        chamfer_w = 1.0 if h == STAGES[0][0] else 0.3
        for _ in range(stage_steps):
            opt.zero_grad()
            pose = full_pose()
            pts, joints = model.pose(pose, betas, transl)
            alpha = render(_splats(pts), cam, 0.0).alpha[..., 0]
            loss = ((known * (alpha - target).square()).mean()
                    + chamfer_w * 10.0 * _chamfer(cam.project(pts) / size, dist, outline, crop)
                    + 1e-3 * ((prior_w * delta.square()).sum() + root.square().sum())
                    + LIMIT_WEIGHT * _limit_penalty(pose, table, right)
                    + (depth_w * depth_change(pose, joints).square()).sum()
                    + 1e-3 * betas.square().sum())
            loss.backward()
            opt.step()
        done += stage_steps
        if progress is not None:
            progress(done / total, f"fitting the body ({cam.height}x{cam.width})")

    with torch.no_grad():
        pose = full_pose()
        pts, _ = model.pose(pose, betas, transl)
        alpha = render(_splats(pts), camera, 0.0).alpha[..., 0].numpy()
        posed = body.pose(pose, betas, transl)
        head = camera.project(torch.cat([posed.vertices[body.head_mask], posed.joints[J["head"]][None]]))
    lo, hi = head.amin(0), head.amax(0)
    c, half = (lo + hi) / 2, float((hi - lo).max()) / 2
    head_box = (float(c[0]) - half, float(c[1]) - half, float(c[0]) + half, float(c[1]) + half)
    if progress is not None:
        progress(1.0, "body fitted")
    return BodyFit(camera=camera, full_pose=pose.detach(), betas=betas.detach().clone(),
                   transl=transl.detach().clone(), head_box=head_box,
                   iou=silhouette_iou(alpha, crop.mask, crop.known()))
