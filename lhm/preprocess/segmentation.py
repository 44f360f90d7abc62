"""Find the person in a loaded photo (user mask, the photo's alpha, rembg, or GrabCut) and check the mask."""
from __future__ import annotations

import importlib.util
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from ..errors import InputError
from .image import load_image, long_side_size
from .types import LoadedImage, Segmentation

METHODS = ("auto", "user", "alpha", "rembg", "grabcut")
MIN_PERSON_AREA = 0.01  # of the image: less is "no person"
OTHER_PERSON_AREA = 0.25  # of the largest component: at least this much is another person, less is a speck
SMALL_PERSON_HEIGHT = 0.25  # of the image height
CUTOUT_FRACTION = 0.05  # transparent share of the image that makes its alpha a cut-out rather than a rounded corner
GRABCUT_SIDE = 320  # long side GrabCut works at: well under a second, the mask is upsampled smoothly
RECT_SIDE = 200  # long side of GrabCut's rectangle seeding, which labels more pixels as unsure and so runs slower
BAND_INSIDE = 0.9  # share of the centre band's person inside the rectangle's for the two to agree
BAND_SHARE = 0.4  # the band's person covers at least this share of the rectangle's when they agree (not just a head)
# body-seeded GrabCut (``refine``), in head heights: how far clothes and hair may reach beyond the fitted body,
# and how deep inside the body (and how near the first mask) the person is certain
REFINE_REACH = 0.6
REFINE_CORE = 0.25

_SESSIONS: dict[tuple[str, tuple[str, ...]], object] = {}
_DOWNLOAD_FAILED: set[str] = set()  # models whose download failed: not retried by every request of a server

log = logging.getLogger(__name__)


def segment(image: LoadedImage, mask=None, method: str = "auto", model: str = "u2net_human_seg") -> Segmentation:
    """The person's mask on ``image``, checked: one person kept, cut-off edges and small size reported.

    ``mask`` (path, bytes, PIL, array or tensor, any size) always wins. ``method``: "auto" (the photo's alpha if it
    is a cut-out, else rembg's ``model`` if it is on disk or can be downloaded, else GrabCut), "user", "alpha",
    "rembg" or "grabcut". Raises InputError when no person is found or the method cannot run.
    """
    if method not in METHODS:
        raise InputError(f"Unknown segmentation method {method!r} — use one of {', '.join(METHODS)}.")
    notes: list[str] = []
    height, width = image.rgb.shape[:2]
    if mask is not None:
        raw, used = _read_mask(mask, height, width, notes), "user"
    elif method == "user":
        raise InputError("Segmentation method 'user' needs a mask — pass mask= (an image, array or path).")
    else:
        raw, used = _run_method(image, method, model, notes)
    return Segmentation(mask=_check_person(raw, notes), method=used, warnings=notes)


def _read_mask(mask, height: int, width: int, notes: list[str]) -> np.ndarray:
    """A user mask as float32 [height, width] in [0,1]: its alpha if it has one, else its brightest channel."""
    try:
        loaded = load_image(mask, max_side=max(height, width), min_side=1)
    except InputError as err:
        raise InputError(f"Cannot use the mask: {err}") from err
    values = loaded.alpha if loaded.alpha is not None else loaded.rgb.max(axis=2).astype(np.float32) / 255
    mask_h, mask_w = values.shape
    if abs(mask_w / mask_h - width / height) > 0.01 * width / height:
        notes.append(f"The mask ({mask_w}x{mask_h} px) has a different shape from the photo ({width}x{height} px); "
                     "it was stretched to fit — check that it lines up with the person.")
    if (mask_h, mask_w) != (height, width):
        values = cv2.resize(values, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(values, 0, 1).astype(np.float32)


def _run_method(image: LoadedImage, method: str, model: str, notes: list[str]) -> tuple[np.ndarray, str]:
    if method == "alpha" or (method == "auto" and _is_cutout(image.alpha)):
        if image.alpha is None:
            raise InputError("The photo has no transparency, so method 'alpha' cannot be used — "
                             "pass an RGBA cut-out, a mask, or use method 'auto'.")
        return image.alpha.copy(), "alpha"
    if method == "grabcut":
        return grabcut(image.rgb), "grabcut"
    missing = _rembg_missing(model)
    if method == "rembg":
        if missing:
            raise InputError(f"The rembg model {model!r} cannot be used: {missing} — {_model_hint(model)}.")
        try:
            return _rembg(image.rgb, model), "rembg"
        except Exception as err:  # download, model and runtime failures all leave the user with the same fix
            raise InputError(f"The rembg model {model!r} failed ({err}) — {_model_hint(model)}.") from err
    if not missing:
        try:
            return _rembg(image.rgb, model), "rembg"
        except Exception as err:  # noqa: BLE001 - auto never fails for want of a model: GrabCut still works
            log.info("rembg model %r failed, falling back to GrabCut: %s", model, err)
            if isinstance(err, OSError):
                _DOWNLOAD_FAILED.add(model)
            missing = "it could not be downloaded or loaded" if isinstance(err, OSError) else f"it failed: {type(err).__name__}"
    notes.append(f"The person was cut out with GrabCut, a simple colour-based method, because the rembg model "
                 f"{model!r} is unavailable ({missing}); the mask may be rough. For a better one "
                 f"{_model_hint(model)}, or pass a mask or an RGBA cut-out.")
    return grabcut(image.rgb), "grabcut"


def _is_cutout(alpha: np.ndarray | None) -> bool:
    return alpha is not None and float((alpha < 0.5).mean()) >= CUTOUT_FRACTION


def model_files(model: str) -> list[Path]:
    """Where rembg looks for ``model``'s weights, mirroring its ``resolve_existing`` (new and legacy layouts)."""
    legacy = Path(os.path.expanduser(os.getenv("U2NET_HOME", os.path.join(os.getenv("XDG_DATA_HOME", "~"), ".u2net"))))
    if os.getenv("U2NET_HOME"):
        home = legacy
    else:
        xdg = os.getenv("XDG_DATA_HOME")
        home = Path(os.path.expanduser(os.getenv("REMBG_HOME", os.path.join(xdg, "rembg") if xdg else "~/.rembg")))
    return [home / "models" / model / f"{model}.onnx", legacy / f"{model}.onnx"]


def _offline() -> bool:
    return any(os.getenv(name, "").strip().lower() in ("1", "true", "yes", "on")
               for name in ("HF_HUB_OFFLINE", "LHM_OFFLINE"))


def _rembg_missing(model: str) -> str:
    """Why rembg cannot run ``model`` here, or "" when it can (file on disk, or downloads allowed)."""
    if importlib.util.find_spec("rembg") is None:
        return "rembg is not installed (pip install 'rembg[cpu]')"
    if any(path.is_file() for path in model_files(model)):
        return ""
    if model in _DOWNLOAD_FAILED:
        return "its file is not on disk and its download failed earlier"
    if not _offline():
        return ""
    return "its file is not on disk and downloads are off (HF_HUB_OFFLINE or LHM_OFFLINE)"


def _model_hint(model: str) -> str:
    return (f"put {model}.onnx in {model_files(model)[1].parent} (or set U2NET_HOME to its folder), "
            "or go online once so rembg downloads it")


def _rembg(rgb: np.ndarray, model: str) -> np.ndarray:
    # Imported here: rembg's first import compiles numba kernels for about a minute.
    from rembg import new_session, remove

    key = (model, tuple(str(path) for path in model_files(model)))  # a moved U2NET_HOME needs a new session
    if key not in _SESSIONS:
        _SESSIONS[key] = new_session(model)
    out = remove(Image.fromarray(rgb), session=_SESSIONS[key], only_mask=True)
    return np.nan_to_num(np.asarray(out, dtype=np.float32) / 255)


def grabcut(rgb: np.ndarray) -> np.ndarray:
    """A person mask from colour alone (OpenCV GrabCut), assuming the person is the main subject of the photo.

    Two seedings run side by side; both take the top, left and right borders as background and leave the bottom
    open, because photos often cut the person at the legs. The centre band seeding (a centre column is probably
    the person) hugs a standing person tightly; the rectangle seeding (everything inside the borders is probably
    the person) also finds people off centre, two people side by side, and upper-body portraits whose clothes
    differ from the face. The band's result is kept when it is a large part of the rectangle's, else the
    rectangle's. Returns float32 [H,W] in [0,1].
    """
    height, width = rgb.shape[:2]
    # OpenCV releases the GIL, so the two seedings run in parallel; the rectangle one, slower per pixel, works
    # smaller to finish with the band one.
    with ThreadPoolExecutor(2) as pool:
        band, rect = pool.map(lambda args: _grabcut_pass(rgb, *args), ((GRABCUT_SIDE, True), (RECT_SIDE, False)))
    if band is None:  # a flat image: GrabCut would keep its seed band as a "person"
        return np.zeros((height, width), np.float32)
    if rect is None:  # flat only at the rectangle's smaller size: fine texture averaged away, the band decides
        rect = band
    rect = cv2.resize(rect.astype(np.uint8), band.shape[::-1], interpolation=cv2.INTER_NEAREST) > 0
    # The rectangle seeding swallows low-contrast background enclosed by arms and legs; the band seeding misses
    # people off centre and keeps only the head of a portrait. When the band's person lies within the rectangle's
    # and is a large part of it, both saw the same person and the band's is the tighter outline.
    inside = (band & rect).sum()
    agree = inside >= BAND_INSIDE * band.sum() and inside >= BAND_SHARE * rect.sum()
    person = (band if agree else rect).astype(np.float32)
    return cv2.resize(person, (width, height), interpolation=cv2.INTER_LINEAR)


def _grabcut_pass(rgb: np.ndarray, side: int, band: bool) -> np.ndarray | None:
    """GrabCut at long side ``side`` from the band or rectangle seeds: bool person mask, or None on a flat image."""
    small = _downscaled(rgb, side)
    if float(small.std()) < 2.0:
        return None
    return _run_grabcut(small, _grabcut_seeds(*small.shape[:2], band))


def _downscaled(rgb: np.ndarray, side: int) -> np.ndarray:
    size = long_side_size(rgb.shape[1], rgb.shape[0], side)
    return rgb if size == rgb.shape[1::-1] else cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)


def _features(rgb: np.ndarray) -> np.ndarray:
    """What GrabCut compares: the colours, or for a grey photo its grey, local contrast and smoothed grey.

    Three equal channels would waste two: texture tells grass and gravel from a coat of the same grey.
    """
    if int(np.abs(rgb.astype(np.int16) - rgb[..., :1]).max()) > 8:
        return rgb
    grey = rgb[..., 0].astype(np.float32)
    mean = cv2.blur(grey, (5, 5))
    contrast = np.sqrt(np.maximum(cv2.blur(grey * grey, (5, 5)) - mean * mean, 0.0))
    return np.stack([grey, np.clip(contrast * 4.0, 0, 255), cv2.blur(grey, (9, 9))], -1).astype(np.uint8)


def _run_grabcut(small: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    background, foreground = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(0)  # GrabCut's k-means starts from OpenCV's (per-thread) RNG: same photo, same mask
    cv2.grabCut(np.ascontiguousarray(_features(small)), seeds, None, background, foreground, 5, cv2.GC_INIT_WITH_MASK)
    return np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))


def _grabcut_seeds(height: int, width: int, band: bool) -> np.ndarray:
    """Borders (not the bottom) as background; inside, a centre column band or everything as probable person."""
    seeds = np.full((height, width), cv2.GC_PR_BGD if band else cv2.GC_PR_FGD, np.uint8)
    if band:
        seeds[int(0.1 * height):, int(0.4 * width):int(0.6 * width)] = cv2.GC_PR_FGD
    border = max(2, round(0.02 * min(height, width)))
    seeds[:border] = cv2.GC_BGD
    seeds[:, :border] = cv2.GC_BGD
    seeds[:, -border:] = cv2.GC_BGD
    return seeds


def refine(image: LoadedImage, segmentation: Segmentation, body: np.ndarray, head: float) -> Segmentation:
    """GrabCut again, seeded by the body fitted to ``segmentation``'s mask: a rough colour-only mask made better.

    ``body``: the fitted body's alpha over the photo (any resolution, the photo's aspect); ``head``: the fitted
    head's height in photo pixels, the unit of how far clothes and hair may reach beyond the body. The body's
    core where the first mask is (or nearly is) is the person whatever its colour (a dark collar that split the
    head off); what lies far from the body (a model rocket beside the head, a tripod's legs) or outside both the
    first mask and the body is background, so clothes reaching further than REFINE_REACH beyond the body (a ball
    gown) are cut back; GrabCut decides the rest by colour. The result is checked like ``segment``'s; the first
    segmentation is returned when the seeds leave GrabCut nothing to learn from or the result holds no person.
    """
    small = _downscaled(image.rgb, GRABCUT_SIDE)
    height, width = small.shape[:2]
    px = head * height / image.rgb.shape[0]  # a head height at the working size
    body = cv2.resize(body.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR) >= 0.5
    first = cv2.resize(segmentation.mask, (width, height), interpolation=cv2.INTER_AREA) >= 0.5

    def grown(m: np.ndarray, reach: float) -> np.ndarray:
        r = max(1, round(reach * px))
        return cv2.dilate(m.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1,) * 2)) > 0

    # the person lies within the first mask or the body, near the body; the first mask beyond the body starts as
    # background so that it joins the person only when its colours are the body's (clothes, hair, not grass)
    seeds = np.full((height, width), cv2.GC_BGD, np.uint8)
    seeds[grown(body, REFINE_REACH) & first] = cv2.GC_PR_BGD
    seeds[body] = cv2.GC_PR_FGD
    seeds[~grown(~body, REFINE_CORE) & grown(first, REFINE_CORE)] = cv2.GC_FGD
    background, person = np.isin(seeds, (cv2.GC_BGD, cv2.GC_PR_BGD)), np.isin(seeds, (cv2.GC_FGD, cv2.GC_PR_FGD))
    if not background.any() or not person.any():  # GrabCut needs both; a body filling or missing the photo
        return segmentation
    person = _run_grabcut(small, seeds).astype(np.float32)
    mask = cv2.resize(person, image.rgb.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    try:
        mask = _check_person(mask, [])  # the same person: the first mask's warnings still hold
    except InputError:  # the body was fitted to something that is not a person: nothing better to offer
        return segmentation
    return Segmentation(mask=mask, method=segmentation.method, warnings=segmentation.warnings)


def _check_person(mask: np.ndarray, notes: list[str]) -> np.ndarray:
    height, width = mask.shape
    _, labels, stats, _ = cv2.connectedComponentsWithStats((mask >= 0.5).astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if areas.size == 0 or areas.max() < MIN_PERSON_AREA * height * width:
        raise InputError("No person found in the photo (the mask is empty or tiny) — use a photo where one person "
                         "is clearly visible and not too small, or supply a mask.")
    largest = int(areas.argmax())
    parts = _parts_of(stats[1:], largest)
    people = 1 + int((~parts & (areas >= OTHER_PERSON_AREA * areas[largest])).sum())
    if people > 1:
        notes.append(f"Found {people} people in the photo; using the largest.")
    keep = np.isin(labels, 1 + np.flatnonzero(parts))
    # Keep the person's soft edge (values < 0.5 next to it) but nothing else: other people, specks, halos.
    size = max(3, round(0.01 * max(height, width))) | 1
    near = cv2.dilate(keep.astype(np.uint8), np.ones((size, size), np.uint8)) > 0
    edges = cut_edges(keep)
    if edges:
        sides = " and ".join(edges) + (" edges" if len(edges) > 1 else " edge")
        notes.append(f"The person is cut off at the {sides} of the photo; the hidden part will be guessed.")
    box_h = cv2.boundingRect(keep.astype(np.uint8))[3]
    if box_h < SMALL_PERSON_HEIGHT * height:
        notes.append(f"The person is small in the photo ({box_h / height:.0%} of its height); the avatar will have "
                     "less detail — crop closer or use a larger photo.")
    return np.where(near, mask, 0).astype(np.float32)


def _parts_of(boxes: np.ndarray, largest: int) -> np.ndarray:
    """Which components belong to the largest one's person (bool per component).

    Masks split at a thin neck, wrist or a belt: small pieces touching the person's box, and big ones stacked above
    or below it, are parts of the same person. Big pieces beside it are other people.
    """
    x, y, w, h = boxes[largest, :4]
    margin = 0.05 * h
    x0, y0, x1, y1 = boxes[:, 0], boxes[:, 1], boxes[:, 0] + boxes[:, 2], boxes[:, 1] + boxes[:, 3]
    near = (x0 <= x + w + margin) & (x1 >= x - margin) & (y0 <= y + h + margin) & (y1 >= y - margin)
    small = boxes[:, cv2.CC_STAT_AREA] < OTHER_PERSON_AREA * boxes[largest, cv2.CC_STAT_AREA]
    stacked = np.minimum(x1, x + w) - np.maximum(x0, x) >= 0.5 * boxes[:, 2]
    return (near & (small | stacked)) | (np.arange(len(boxes)) == largest)


def cut_edges(mask: np.ndarray) -> list[str]:
    """The image borders ("top", "bottom", "left", "right") the person (``mask >= 0.5``) runs into over at least
    5 % of their own width or height."""
    keep = mask >= 0.5
    if not keep.any():
        return []
    _, _, box_w, box_h = cv2.boundingRect(keep.astype(np.uint8))
    lines = {"top": (keep[0], box_w), "bottom": (keep[-1], box_w), "left": (keep[:, 0], box_h),
             "right": (keep[:, -1], box_h)}
    return [side for side, (line, extent) in lines.items() if line.sum() >= max(3, 0.05 * extent)]
