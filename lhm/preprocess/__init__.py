"""Photo to person: load, segment, crop at the LHM framing, fit the body.

``prepare`` runs the stages in order and returns a ``PersonImage`` that every engine starts from.
Each stage is its own module with a small interface (``image``, ``segmentation``, ``crop``, ``fit``).
"""
from __future__ import annotations

from ..body import Body, load_body
from ..errors import InputError
from .crop import crop_person, lhm_inputs
from .fit import body_silhouette, fit_body, recrop
from .image import load_image
from .segmentation import GRABCUT_SIDE, refine, segment
from .types import BodyFit, LoadedImage, PersonCrop, PersonImage, Segmentation

__all__ = ["BodyFit", "InputError", "LoadedImage", "PersonCrop", "PersonImage", "Segmentation", "crop_person",
           "fit_body", "lhm_inputs", "load_image", "prepare", "segment"]


SEED_FIT_STEPS = 40  # the body that seeds a GrabCut mask's refinement needs its place and size, not detail
POOR_FIT_IOU = 0.75  # synthetic people fit at 0.83-0.90; a cut-out of grass and tripod fits at 0.69


def prepare(image, mask=None, *, body: Body | None = None, remove_background: bool = True,
            segmentation_model: str = "u2net_human_seg", progress=None) -> PersonImage:
    """One photo (path, bytes, PIL image, array or tensor) to the fitted person.

    ``mask``: the person's mask, used as given. ``remove_background=False`` trusts the photo's own
    transparency (an RGBA cut-out) instead of segmenting. ``body``: the body to fit (default: the
    free body). ``progress(fraction, desc)`` is called between stages. Raises ``InputError`` with a
    message for the user when the photo cannot be used; softer problems end up in ``warnings``.
    """
    report = progress or (lambda fraction, desc: None)
    report(0.0, "reading the photo")
    loaded = load_image(image)
    report(0.1, "finding the person")
    if mask is None and not remove_background:
        if loaded.alpha is None:
            raise InputError("Background removal is off, but the photo has no transparent background. "
                             "Turn background removal on, or upload a cut-out (PNG with transparency).")
        seg = segment(loaded, method="alpha")
    else:
        seg = segment(loaded, mask=mask, model=segmentation_model)
    body = body if body is not None else load_body("free")
    report(0.3, "cropping")
    crop = crop_person(loaded.rgb, seg.mask)
    report(0.4, "fitting the body")
    # a colour-only mask may hold background or miss dark parts: a quick first body seeds a better one, which
    # the body is then fitted to, starting from the first
    grabcut = seg.method == "grabcut"
    fit = fit_body(crop, body, steps=SEED_FIT_STEPS if grabcut else None,
                   progress=lambda f, desc: report(0.4 + (0.3 if grabcut else 0.6) * f, desc))
    if grabcut:
        report(0.7, "refining the cut-out")
        head = (fit.head_box[3] - fit.head_box[1]) / crop.scale
        seg = refine(loaded, seg, body_silhouette(fit, crop, body, loaded.rgb.shape[:2], GRABCUT_SIDE), head)
        first, crop = crop, crop_person(loaded.rgb, seg.mask)
        # also when the mask came back unchanged: the quick first fit is finished this way
        fit = fit_body(crop, body, init=recrop(fit, first, crop, body),
                       progress=lambda f, desc: report(0.7 + 0.3 * f, desc))
    warnings = [*loaded.warnings, *seg.warnings]
    if fit.iou < POOR_FIT_IOU:
        warnings.append(f"The body matches the cut-out poorly (overlap {fit.iou:.0%}): the cut-out may hold background "
                        "or only part of the person, so the avatar will be rough. A full-body photo of one standing "
                        "person, or a mask, works best.")
    return PersonImage(loaded, seg, crop, fit, warnings=warnings)
