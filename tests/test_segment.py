"""Person segmentation: user masks, alpha, rembg through a tiny offline ONNX model, GrabCut, and the person checks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from lhm.errors import InputError
from lhm.preprocess.image import load_image
from lhm.preprocess import segmentation as segment_module
from lhm.preprocess.segmentation import grabcut, segment
from lhm.preprocess.types import LoadedImage

PERSON = (200, 40, 60)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def person_silhouette(height: int, width: int, cx: float = 0.5, top: float = 0.08, tall: float = 0.84) -> np.ndarray:
    """A standing body: head circle, torso, arms and legs; bool [height, width]."""
    sil = np.zeros((height, width), np.uint8)
    unit = tall * height
    x, y = int(cx * width), int(top * height)
    cv2.circle(sil, (x, int(y + 0.07 * unit)), int(0.07 * unit), 1, -1)
    torso = (int(x - 0.12 * unit), int(y + 0.13 * unit)), (int(x + 0.12 * unit), int(y + 0.55 * unit))
    cv2.rectangle(sil, *torso, 1, -1)
    for side in (-1, 1):
        shoulder = x + side * int(0.12 * unit)
        cv2.line(sil, (shoulder, int(y + 0.18 * unit)), (shoulder + side * int(0.1 * unit), int(y + 0.5 * unit)), 1,
                 max(2, int(0.05 * unit)))
        cv2.rectangle(sil, (x + min(0, side) * int(0.1 * unit), int(y + 0.55 * unit)),
                      (x + max(0, side) * int(0.1 * unit), int(y + unit)), 1, -1)
    return sil > 0


def textured_background(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Blue-green stripes with noise: no red, so the red person stands out by colour alone."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[:height, :width]
    stripes = ((xs // 16 + ys // 24) % 2)[..., None] * np.array([10, 60, 40])
    base = np.array([30, 120, 150]) + stripes + rng.normal(0, 8, (height, width, 3))
    return np.clip(base, 0, 255).astype(np.uint8)


def person_image(height: int = 480, width: int = 320, **kw) -> tuple[np.ndarray, np.ndarray]:
    """A red person on a textured background, and its true silhouette."""
    sil = person_silhouette(height, width, **kw)
    rgb = textured_background(height, width)
    rgb[sil] = PERSON
    return rgb, sil


def iou(mask: np.ndarray, truth: np.ndarray) -> float:
    pred = mask >= 0.5
    return float((pred & truth).sum() / (pred | truth).sum())


@pytest.fixture
def red_segmenter():
    """Writes the tiny ONNX person segmenter (needs the test extra's ``onnx``)."""
    pytest.importorskip("onnx")
    import onnx_model

    return onnx_model.write_red_segmenter


@pytest.fixture
def offline_home(tmp_path, monkeypatch):
    """An empty rembg model folder, offline, and a fresh session cache."""
    home = tmp_path / "u2net"
    home.mkdir()
    monkeypatch.setenv("U2NET_HOME", str(home))
    monkeypatch.setenv("LHM_OFFLINE", "1")
    monkeypatch.setattr(segment_module, "_SESSIONS", {})
    return home


def test_user_mask_any_kind(offline_home):
    rgb, sil = person_image()
    image = LoadedImage(rgb)
    for mask in (sil, sil.astype(np.float32), (sil * 255).astype(np.uint8), (sil * 65535).astype(np.uint16),
                 torch.from_numpy(sil.astype(np.float32))[None], Image.fromarray((sil * 255).astype(np.uint8))):
        seg = segment(image, mask=mask)
        assert seg.method == "user" and seg.mask.dtype == np.float32 and seg.mask.shape == sil.shape
        assert iou(seg.mask, sil) > 0.99


def test_user_mask_from_path_and_rgba_cutout(offline_home, tmp_path):
    rgb, sil = person_image()
    path = tmp_path / "cutout.png"
    Image.fromarray(np.dstack([rgb, sil * 255]).astype(np.uint8), "RGBA").save(path)
    seg = segment(LoadedImage(rgb), mask=path, method="grabcut")
    assert seg.method == "user" and iou(seg.mask, sil) > 0.99


def test_user_mask_resized_with_warning_when_aspect_differs(offline_home):
    rgb, sil = person_image()
    same = cv2.resize(sil.astype(np.uint8) * 255, (160, 240), interpolation=cv2.INTER_NEAREST)
    seg = segment(LoadedImage(rgb), mask=same)
    assert seg.mask.shape == sil.shape and iou(seg.mask, sil) > 0.9 and not seg.warnings
    wide = cv2.resize(sil.astype(np.uint8) * 255, (400, 400), interpolation=cv2.INTER_NEAREST)
    seg = segment(LoadedImage(rgb), mask=wide)
    assert seg.mask.shape == sil.shape and iou(seg.mask, sil) > 0.9
    assert any("different shape" in w and "stretched" in w for w in seg.warnings)


def test_alpha_cutout_used_by_auto(offline_home):
    rgb, sil = person_image()
    seg = segment(LoadedImage(rgb, alpha=sil.astype(np.float32)))
    assert seg.method == "alpha" and iou(seg.mask, sil) == 1.0 and not seg.warnings


def test_alpha_method_without_alpha_is_an_input_error(offline_home):
    with pytest.raises(InputError, match="no transparency"):
        segment(LoadedImage(person_image()[0]), method="alpha")


def test_unknown_method_and_user_without_mask(offline_home):
    with pytest.raises(InputError, match="Unknown segmentation method"):
        segment(LoadedImage(person_image()[0]), method="magic")
    with pytest.raises(InputError, match="needs a mask"):
        segment(LoadedImage(person_image()[0]), method="user")


def test_grabcut_finds_the_synthetic_person(offline_home):
    rgb, sil = person_image(1024, 683)
    assert iou(grabcut(rgb), sil) > 0.8


def test_grabcut_finds_two_people_side_by_side_and_keeps_the_largest(offline_home):
    # The centre column between them is background: GrabCut must not be seeded there alone.
    height, width = 480, 640
    big = person_silhouette(height, width, cx=0.3)
    small = person_silhouette(height, width, cx=0.72, top=0.15, tall=0.75)
    rgb = textured_background(height, width)
    rgb[big | small] = PERSON
    found = grabcut(rgb) >= 0.5
    assert (found & big).sum() > 0.8 * big.sum() and (found & small).sum() > 0.8 * small.sum()
    seg = segment(LoadedImage(rgb), method="grabcut")
    assert iou(seg.mask, big) > 0.85
    assert seg.warnings == ["Found 2 people in the photo; using the largest."]


def test_auto_without_model_falls_back_to_grabcut_with_warning(offline_home):
    rgb, sil = person_image()
    seg = segment(LoadedImage(rgb))
    assert seg.method == "grabcut" and iou(seg.mask, sil) > 0.8
    assert len(seg.warnings) == 1
    assert "GrabCut" in seg.warnings[0] and "u2net_human_seg.onnx" in seg.warnings[0] and "mask" in seg.warnings[0]


def test_explicit_rembg_without_model_says_where_to_put_it(offline_home):
    with pytest.raises(InputError, match="u2net_human_seg.onnx") as err:
        segment(LoadedImage(person_image()[0]), method="rembg")
    assert str(offline_home) in str(err.value)


def test_rembg_runs_a_model_from_u2net_home(offline_home, red_segmenter):
    red_segmenter(offline_home / "u2net_human_seg.onnx")
    rgb, sil = person_image()
    seg = segment(LoadedImage(rgb), method="rembg")
    assert seg.method == "rembg" and iou(seg.mask, sil) > 0.9 and not seg.warnings
    auto = segment(LoadedImage(rgb))
    assert auto.method == "rembg" and np.array_equal(auto.mask, seg.mask)
    assert len(segment_module._SESSIONS) == 1  # the session was made once and reused


def test_rembg_finds_the_new_per_model_layout(tmp_path, monkeypatch, red_segmenter):
    monkeypatch.delenv("U2NET_HOME", raising=False)
    monkeypatch.setenv("REMBG_HOME", str(tmp_path / "rembg"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(segment_module, "_SESSIONS", {})
    red_segmenter(tmp_path / "rembg" / "models" / "u2net_human_seg" / "u2net_human_seg.onnx")
    rgb, sil = person_image()
    seg = segment(LoadedImage(rgb), method="rembg")
    assert seg.method == "rembg" and iou(seg.mask, sil) > 0.9


def test_no_person_is_an_input_error(offline_home):
    rgb = person_image()[0]
    blank = np.full((480, 320, 3), 128, np.uint8)
    noise = np.random.default_rng(1).integers(0, 256, (480, 320, 3), dtype=np.uint8)
    cases = [(LoadedImage(rgb), {"mask": np.zeros((480, 320), np.float32)}),
             (LoadedImage(blank), {"method": "grabcut"}),
             (LoadedImage(noise), {"method": "grabcut"}),
             (LoadedImage(rgb), {"mask": np.pad(np.ones((10, 10)), ((200, 270), (150, 160)))})]
    for image, kw in cases:
        with pytest.raises(InputError, match="No person found") as err:
            segment(image, **kw)
        assert "supply a mask" in str(err.value)


def test_two_people_keep_the_largest(offline_home):
    height, width = 480, 640
    big = person_silhouette(height, width, cx=0.3)
    small = person_silhouette(height, width, cx=0.75, top=0.3, tall=0.6)
    speck = np.zeros_like(big)
    speck[5:9, 600:604] = True
    seg = segment(LoadedImage(textured_background(height, width)), mask=big | small | speck)
    assert np.array_equal(seg.mask >= 0.5, big)
    assert seg.warnings == ["Found 2 people in the photo; using the largest."]


def test_detached_head_is_kept_far_specks_are_dropped(offline_home):
    height, width = 480, 320
    body = person_silhouette(height, width)
    body[int(0.08 * height + 0.13 * 0.84 * height):int(0.08 * height + 0.15 * 0.84 * height)] = False  # cut the neck
    speck = np.zeros_like(body)
    speck[440:446, 10:16] = True
    seg = segment(LoadedImage(textured_background(height, width)), mask=body | speck)
    assert np.array_equal(seg.mask >= 0.5, body) and not seg.warnings


def test_body_split_at_the_belt_stays_one_person(offline_home):
    height, width = 480, 320
    body = person_silhouette(height, width)
    body[int(0.08 * height + 0.54 * 0.84 * height):int(0.08 * height + 0.56 * 0.84 * height)] = False
    seg = segment(LoadedImage(textured_background(height, width)), mask=body)
    assert np.array_equal(seg.mask >= 0.5, body) and not seg.warnings


def test_cut_off_person_warns_with_the_edge(offline_home):
    height, width = 480, 320
    cut = person_silhouette(height, width, top=0.3, tall=1.0)  # legs run past the bottom
    seg = segment(LoadedImage(textured_background(height, width)), mask=cut)
    assert len(seg.warnings) == 1 and "cut off at the bottom edge" in seg.warnings[0]
    assert "guessed" in seg.warnings[0]
    full = person_silhouette(height, width)
    assert not segment(LoadedImage(textured_background(height, width)), mask=full).warnings


def test_small_person_warns(offline_home):
    height, width = 960, 640
    tiny = person_silhouette(height, width, top=0.5, tall=0.2)
    seg = segment(LoadedImage(textured_background(height, width)), mask=tiny)
    assert len(seg.warnings) == 1 and "small" in seg.warnings[0]


def test_bad_user_mask_is_an_input_error(offline_home):
    with pytest.raises(InputError, match="mask.*NaN"):
        segment(LoadedImage(person_image()[0]), mask=np.full((480, 320), np.nan))


def test_rembg_is_imported_only_when_used(tmp_path):
    code = """
import importlib, sys
import numpy as np
seg = importlib.import_module("lhm.preprocess.segmentation")
print('rembg' in sys.modules)
rgb = np.zeros((200, 200, 3), np.uint8)
rgb[40:180, 80:120] = (200, 40, 60)
seg.segment(seg.LoadedImage(rgb))
print('rembg' in sys.modules)
"""
    env = {**os.environ, "U2NET_HOME": str(tmp_path), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.split() == ["False", "False"]


def test_failed_rembg_falls_back_in_auto_and_fails_loudly_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("U2NET_HOME", str(tmp_path))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("LHM_OFFLINE", raising=False)

    calls = []

    def no_network(rgb, model):
        calls.append(model)
        raise OSError("download failed: no network")

    monkeypatch.setattr(segment_module, "_rembg", no_network)
    monkeypatch.setattr(segment_module, "_DOWNLOAD_FAILED", set())
    rgb, sil = person_image()
    seg = segment(LoadedImage(rgb))
    assert seg.method == "grabcut" and iou(seg.mask, sil) > 0.8
    assert len(seg.warnings) == 1 and "could not be downloaded" in seg.warnings[0] and "GrabCut" in seg.warnings[0]
    assert segment(LoadedImage(rgb)).method == "grabcut" and calls == ["u2net_human_seg"]  # not retried
    with pytest.raises(InputError, match="download failed earlier.*u2net_human_seg.onnx"):
        segment(LoadedImage(rgb), method="rembg")


def test_grabcut_on_a_half_body_photo_reports_the_cut(offline_home):
    rgb, sil = person_image(top=0.3, tall=1.0)
    seg = segment(LoadedImage(rgb), method="grabcut")
    assert iou(seg.mask, sil) > 0.8
    assert any("cut off at the bottom edge" in w for w in seg.warnings)


def test_loaded_photo_round_trip(offline_home, tmp_path):
    rgb, sil = person_image()
    path = tmp_path / "person.jpg"
    Image.fromarray(rgb).save(path, quality=95)
    seg = segment(load_image(path), method="grabcut")
    assert iou(seg.mask, sil) > 0.8


def test_prepare_refines_a_grabcut_mask_with_the_fitted_body(offline_home):
    """The astronaut photo offline: GrabCut alone splits the head off at the dark collar and keeps the model
    rocket beside her; the body fitted to it seeds a second cut that holds the neck and drops the rocket."""
    from lhm.preprocess import prepare

    rgb = load_image(EXAMPLES / "astronaut.jpg").rgb
    first = segment(LoadedImage(rgb), method="grabcut").mask
    neck, rocket = (slice(185, 215), slice(205, 245)), (slice(20, 150), slice(400, 440))
    assert first[neck].mean() < 0.5 and first[rocket].mean() > 0.5  # what goes wrong without the body
    person = prepare(rgb)
    mask = person.segmentation.mask
    assert person.segmentation.method == "grabcut"
    assert mask[neck].mean() > 0.9 and mask[rocket].mean() < 0.05
    assert person.crop.cut["bottom"] == pytest.approx(person.crop.mask.shape[0]) and person.fit.iou > 0.85


def test_grabcut_tells_a_grey_person_from_textured_grey_ground(offline_home):
    """A grey photo gives GrabCut its local contrast in place of the two missing colours: a smooth figure on
    grass-like noise of the same mean grey is found."""
    sil = person_silhouette(240, 180)
    rng = np.random.default_rng(0)
    grey = np.where(sil, 120.0, 120.0 + rng.normal(0.0, 35.0, sil.shape))
    rgb = np.repeat(np.clip(grey, 0, 255).astype(np.uint8)[..., None], 3, axis=2)
    assert iou(grabcut(rgb), sil) > 0.8


def test_refine_keeps_the_first_mask_when_the_body_leaves_grabcut_nothing_to_learn(offline_home):
    """A fitted body that fills the photo (no background seed) or misses it (no person seed) returns the first
    segmentation instead of an OpenCV assertion."""
    from lhm.preprocess.segmentation import refine

    sil = person_silhouette(240, 180)
    rgb = np.where(sil[..., None], np.array(PERSON, np.uint8), np.uint8(90)).astype(np.uint8)
    seg = segment(LoadedImage(rgb), method="grabcut")
    for body in (np.ones(sil.shape, np.float32), np.zeros(sil.shape, np.float32)):
        assert refine(LoadedImage(rgb), seg, body, 40.0) is seg
