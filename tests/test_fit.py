"""Cropping at the LHM framing, the LHM network's input images, and fitting the body to a silhouette."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lhm.body import skeleton
from lhm.errors import InputError
from lhm.gaussians import Gaussians
from lhm.motion import Motion, limit_violations
from lhm.preprocess.crop import body_input_size, crop_person, lhm_inputs, person_box
from lhm.preprocess.fit import fit_body
from lhm.render import Camera, render

J = skeleton.JOINT_INDEX


def synthetic_pose(name: str) -> torch.Tensor:
    """A full pose [55,3] for a named test case (arms hanging 70 degrees below horizontal by default)."""
    r = math.radians
    p = torch.zeros(skeleton.NUM_JOINTS, 3)
    p[J["left_shoulder"], 2], p[J["right_shoulder"], 2] = -r(70), r(70)
    if name == "arm_raised":
        p[J["left_shoulder"], 2], p[J["left_elbow"], 1] = r(50), -r(30)
    elif name == "walking":
        p[J["left_hip"], 0], p[J["right_hip"], 0], p[J["right_knee"], 0] = -r(30), r(20), r(40)
    elif name == "turned":
        p[0, 1] = r(20)
    elif name == "wide":
        p[J["left_hip"], 2], p[J["right_hip"], 2] = r(20), -r(20)
        p[J["left_shoulder"], 2], p[J["right_shoulder"], 2] = -r(30), r(30)
    return p


def synthetic_person(body, name: str, betas=None, distance: float = 3.0, size=(720, 540), fov_y_deg: float = 40.0):
    """The body rendered as a photo: rgb uint8, mask float32 and the true head's image points [N,2].

    Dense small Gaussians on every vertex, seen by a camera unlike the fit's (other FoV, a little
    above and to the side), so the fit does not just match its own rendering.
    """
    posed = body.pose(synthetic_pose(name), None if betas is None else torch.as_tensor(betas, dtype=torch.float32))
    v = posed.vertices
    n = v.shape[0]
    g = Gaussians(v, torch.tensor([1.0, 0, 0, 0]).expand(n, 4), torch.full((n, 3), 0.012), torch.ones(n),
                  torch.tensor([0.8, 0.3, 0.2]).expand(n, 3))
    c = (v.amin(0) + v.amax(0)) / 2
    H, W = size
    cam = Camera.look_at([float(c[0]) + 0.1, float(c[1]) + 0.2, distance], [float(c[0]), float(c[1]), 0.0], W, H,
                         fov_y_deg=fov_y_deg)
    out = render(g, cam, 0.0)
    head = torch.cat([v[body.head_mask], posed.joints[J["head"]][None]])
    p = head @ cam.viewmat[:3, :3].T + cam.viewmat[:3, 3]
    uv = p[:, :2] / p[:, 2:] * cam.K.diagonal()[:2] + cam.K[:2, 2]
    return (out.rgb.numpy() * 255).astype(np.uint8), out.alpha[..., 0].numpy().astype(np.float32), uv


def _box_image(H=400, W=300, box=(100, 80, 160, 330)):
    rgb = np.zeros((H, W, 3), np.uint8)
    rgb[..., 1] = 40
    mask = np.zeros((H, W), np.float32)
    x0, y0, x1, y1 = box
    mask[y0:y1, x0:x1] = 1.0
    rgb[y0:y1, x0:x1] = (200, 100, 50)
    return rgb, mask


# ---------------------------------------------------------------- crop_person


def test_person_box_follows_the_runner_int_quirks():
    mask = np.zeros((200, 100), np.float32)
    mask[20:120, 10:50] = 1.0  # tight box x 10..49, y 20..119
    # centre int(29.5)=29, int(69.5)=69; sizes 39*1.1=42.9, 99*1.1=108.9; l = 29 - 42.9//2, r = 29 + 42.9 - 21
    assert person_box(mask) == (8, 15, 50, 123)


def _round_trip(rgb, mask, crop):
    x0, y0, x1, y1 = crop.box
    H, W = crop.mask.shape
    assert (H, W) == (640, 384)
    assert (y1 - y0) * 3 == pytest.approx((x1 - x0) * 5)  # exactly 5:3
    assert crop.scale == pytest.approx(H / (y1 - y0)) and crop.scale == pytest.approx(W / (x1 - x0))
    # the mask's tight box, mapped into the crop and back, lands where it was (within a crop pixel)
    ys, xs = np.nonzero(mask >= 0.5)
    cys, cxs = np.nonzero(crop.mask >= 0.5)
    got = np.array([cxs.min(), cys.min(), cxs.max() + 1, cys.max() + 1]) / crop.scale + np.array([x0, y0, x0, y0])
    want = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    np.testing.assert_allclose(got, want, atol=1.0 / crop.scale + 1e-6)
    # colours come through unwhitened: a crop pixel deep inside the person has the photo's colour
    cy, cx = int(np.median(cys)), int(np.median(cxs))
    iy, ix = int(y0 + (cy + 0.5) / crop.scale), int(x0 + (cx + 0.5) / crop.scale)
    np.testing.assert_allclose(crop.rgb[cy, cx], rgb[iy, ix] / 255.0, atol=0.02)


def test_crop_narrow_person_pads_sides_white():
    rgb, mask = _box_image()
    crop = crop_person(rgb, mask)
    _round_trip(rgb, mask, crop)
    assert np.all(crop.rgb[:, :5] == 1.0) and np.all(crop.mask[:, :5] == 0.0)
    assert np.all(crop.rgb[:, -5:] == 1.0) and np.all(crop.mask[:, -5:] == 0.0)
    assert crop.rgb.dtype == np.float32 and crop.mask.dtype == np.float32


def test_crop_wide_person_pads_top_only():
    rgb, mask = _box_image(H=300, W=400, box=(60, 120, 340, 260))
    crop = crop_person(rgb, mask)
    _round_trip(rgb, mask, crop)
    assert crop.box[1] < 0  # rows added above the image
    assert np.all(crop.rgb[:20] == 1.0) and np.all(crop.mask[:20] == 0.0)
    assert crop.box[3] <= rgb.shape[0]  # nothing added below


def test_crop_mask_touching_the_border():
    rgb, mask = _box_image(H=300, W=200, box=(0, 40, 70, 300))
    crop = crop_person(rgb, mask)
    _round_trip(rgb, mask, crop)
    assert crop.box[3] == rgb.shape[0]  # the x1.1 box is clipped to the image


def test_crop_rejects_an_empty_mask():
    rgb, mask = _box_image()
    with pytest.raises(InputError):
        crop_person(rgb, np.zeros_like(mask))


# ---------------------------------------------------------------- lhm_inputs


@pytest.mark.parametrize("source, size", [(1024, (1694, 1022)), (512, (840, 504))])
def test_lhm_inputs_sizes_and_white_background(source, size):
    rgb, mask = _box_image()
    assert body_input_size(source) == size
    body_img, head_img = lhm_inputs(rgb, mask, (110, 90, 150, 130), source)
    assert body_img.shape == (1, 3, *size) and body_img.dtype == torch.float32
    assert head_img.shape == (1, 3, 112, 112)
    assert torch.all(body_img[..., :4, :4] == 1.0)  # the black-green background became white
    centre = body_img[0, :, size[0] // 2, size[1] // 2]
    torch.testing.assert_close(centre, torch.tensor([200, 100, 50]) / 255.0, atol=1e-3, rtol=0)


def test_lhm_head_image_comes_from_the_original_photo():
    rgb, mask = _box_image()
    # a head box at the person's top edge: its 1.65x square takes in the photo's background too
    head = lhm_inputs(rgb, mask, (110, 70, 150, 110), 512)[1][0]
    assert float(head[1].min()) == pytest.approx(40 / 255.0, abs=1e-3)  # background green kept, not whitened
    assert float(head[0].max()) == pytest.approx(200 / 255.0, abs=1e-3)
    for empty in (None, (120, 100, 120, 140)):
        assert torch.all(lhm_inputs(rgb, mask, empty, 512)[1] == 0)


# ---------------------------------------------------------------- fit_body

CASES = ["arms_down", "arm_raised", "walking", "turned"]


@pytest.fixture(scope="module")
def fits(free_body):
    out = {}
    for name in CASES:
        rgb, mask, head_uv = synthetic_person(free_body, name, betas=[0.5, -0.5] if name == "walking" else None,
                                              distance=3.6 if name == "turned" else 3.0)
        crop = crop_person(rgb, mask)
        out[name] = (crop, fit_body(crop, free_body), (head_uv - torch.tensor(crop.box[:2])) * crop.scale)
    return out


@pytest.mark.parametrize("name", CASES)
def test_fit_matches_the_silhouette(fits, name):
    crop, fit, head_uv = fits[name]
    assert fit.iou >= 0.85, f"{name}: IoU {fit.iou:.3f}"
    assert fit.full_pose.shape == (55, 3) and fit.transl.shape == (3,)
    assert (fit.camera.height, fit.camera.width) == crop.mask.shape
    # the head box holds the true head's centre and overlaps its box
    x0, y0, x1, y1 = fit.head_box
    lo, hi = head_uv.amin(0), head_uv.amax(0)
    cx, cy = float(lo[0] + hi[0]) / 2, float(lo[1] + hi[1]) / 2
    assert x0 <= cx <= x1 and y0 <= cy <= y1
    ix = max(0.0, min(x1, float(hi[0])) - max(x0, float(lo[0])))
    iy = max(0.0, min(y1, float(hi[1])) - max(y0, float(lo[1])))
    assert ix * iy >= 0.5 * float((hi - lo).prod())


@pytest.mark.parametrize("name", CASES)
def test_fit_stays_within_joint_limits(fits, name):
    assert limit_violations(Motion.from_full_pose(fits[name][1].full_pose[None])) == []


def test_fit_is_deterministic(fits, free_body):
    crop, fit, _ = fits["arm_raised"]
    calls = []
    again = fit_body(crop, free_body, progress=lambda f, desc: calls.append(f))
    assert torch.equal(again.full_pose, fit.full_pose) and torch.equal(again.transl, fit.transl)
    assert torch.equal(again.betas, fit.betas) and again.head_box == fit.head_box and again.iou == fit.iou
    assert calls and calls[-1] == 1.0 and calls == sorted(calls)


def test_fit_does_not_lean_a_standing_person_in_depth(fits, free_body):
    """A silhouette hardly sees depth: the fitted legs of a standing person stay upright from the side.

    The knees, ankles and feet (relative to the pelvis, root rotation aside) stay within 4 cm of the
    true depth, and the whole body is not pitched towards or away from the camera. Without the depth
    prior the fit leaned the legs 6-11 cm backwards here, and up to 30 cm on the example photos.
    """
    _, fit, _ = fits["arms_down"]
    legs = [J[n] for n in ("left_knee", "right_knee", "left_ankle", "right_ankle", "left_foot", "right_foot")]

    def leg_depth(pose, betas):
        pose = pose.clone()
        pose[0] = 0.0
        joints = free_body.pose(pose, betas).joints
        return (joints - joints[0])[legs, 2]

    error = leg_depth(fit.full_pose, fit.betas) - leg_depth(synthetic_pose("arms_down"), None)
    assert float(error.abs().max()) < 0.04, f"leg depth errors (m): {error.tolist()}"
    assert abs(math.degrees(float(fit.full_pose[0, 0]))) < 8.0, f"root pitch {fit.full_pose[0].tolist()}"


def test_prepare_warns_when_the_body_cannot_match_the_cut_out():
    """A mask that is no standing person (a wide blob) is still fitted, but the user is told the result will be rough."""
    from lhm.preprocess import POOR_FIT_IOU, prepare

    rgb = np.full((400, 600, 3), 200, np.uint8)
    mask = np.zeros((400, 600), np.float32)
    mask[150:300, 50:550] = 1.0  # a wide band: nothing like a body
    person = prepare(rgb, mask)
    assert person.fit.iou < POOR_FIT_IOU and any("matches the cut-out poorly" in w for w in person.warnings)


def test_crop_records_where_the_person_runs_out_of_the_photo():
    rgb, mask = _box_image(H=300, W=200, box=(0, 40, 70, 300))  # runs into the left and bottom borders
    crop = crop_person(rgb, mask)
    assert set(crop.cut) == {"left", "bottom"}
    assert crop.cut["bottom"] == pytest.approx(crop.mask.shape[0])  # the crop ends with the photo
    left = crop.cut["left"]
    assert left == pytest.approx(-crop.box[0] * crop.scale) and left > 1  # the side padding lies beyond it
    known = crop.known()
    assert not known[:, : int(left) - 1].any() and known[:, int(left) + 1:].all()
    assert crop.known(64, 40).shape == (64, 40)
    points = torch.tensor([[left - 1, 10.0], [left + 1, 10.0], [left + 1, crop.cut["bottom"] + 1]])
    assert crop.beyond(points).tolist() == [True, False, True]
    assert crop_person(*_box_image()).cut == {}  # a person inside the photo


def test_fit_of_a_photo_that_ends_at_the_hips(free_body):
    """An upper-body photo gets a body of the right size whose legs go on below the photo, not a whole standing
    body squeezed into it (which halves the head)."""
    rgb, mask, head_uv = synthetic_person(free_body, "arms_down")
    ys = np.nonzero(mask.max(1) >= 0.5)[0]
    cut = int(ys[0] + 0.5 * (ys[-1] - ys[0]))  # about the hips
    crop = crop_person(rgb[:cut], mask[:cut])
    assert "bottom" in crop.cut
    fit = fit_body(crop, free_body)
    assert fit.iou >= 0.85, f"IoU {fit.iou:.3f}"
    true_head = float((head_uv[:, 1].max() - head_uv[:, 1].min()) * crop.scale)
    fitted_head = fit.head_box[3] - fit.head_box[1]
    assert 0.75 < fitted_head / true_head < 1.35, (fitted_head, true_head)
    posed = free_body.pose(fit.full_pose, fit.betas, fit.transl)
    feet = fit.camera.project(posed.joints[[J["left_ankle"], J["right_ankle"]]])
    assert float(feet[:, 1].min()) > 1.3 * crop.mask.shape[0]  # far below the photo's bottom edge


def test_a_fit_carried_to_another_crop_covers_the_same_pixels(fits, free_body):
    """``recrop`` keeps the body where it was in the photo, so a refit on the new crop starts in place."""
    from lhm.preprocess.fit import body_silhouette, recrop, silhouette_iou

    rgb, mask, _ = synthetic_person(free_body, "arms_down")
    crop, fit, _ = fits["arms_down"]
    wider = mask.copy()
    wider[600:640, 20:60] = 1.0  # a speck far to the side makes a bigger, shifted crop
    other = crop_person(rgb, wider)
    assert other.box != crop.box
    moved = recrop(fit, crop, other, free_body)
    size = mask.shape
    assert silhouette_iou(body_silhouette(moved, other, free_body, size, 320),
                          body_silhouette(fit, crop, free_body, size, 320)) > 0.9
    to_photo = lambda box, c: (c.box[0] + box[0] / c.scale, c.box[1] + box[1] / c.scale)
    assert to_photo(moved.head_box, other) == pytest.approx(to_photo(fit.head_box, crop), abs=1e-3)
    refit = fit_body(other, free_body, init=moved)
    assert refit.iou >= 0.8 and (refit.camera.height, refit.camera.width) == other.mask.shape


def test_fit_of_a_photo_that_starts_at_the_waist(free_body):
    """Cut off at the top (head out of the photo): the body is placed from the feet up, its head above the photo."""
    rgb, mask, _ = synthetic_person(free_body, "arms_down")
    ys = np.nonzero(mask.max(1) >= 0.5)[0]
    cut = int(ys[0] + 0.5 * (ys[-1] - ys[0]))
    crop = crop_person(rgb[cut:], mask[cut:])
    assert set(crop.cut) == {"top"}
    fit = fit_body(crop, free_body)
    assert fit.iou >= 0.85, f"IoU {fit.iou:.3f}"
    posed = free_body.pose(fit.full_pose, fit.betas, fit.transl)
    head, feet = (fit.camera.project(posed.joints[[J[n]]])[0, 1] for n in ("head", "left_ankle"))
    assert float(head) < crop.cut["top"] - 0.3 * crop.mask.shape[0]  # well above the photo
    assert crop.cut["top"] < float(feet) < crop.mask.shape[0]
