"""SMPL-X as a Body, loaded from the user's model files through the ``smplx`` package."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from . import skeleton
from .body import Body

SMPLX_DOWNLOAD = "https://smpl-x.is.tue.mpg.de (register, then download 'SMPL-X v1.1 (NPZ+PKL)')"
NUM_VERTICES = 10475
MODEL_ENV = "LHM_SMPLX_DIR"


class SMPLXFilesError(InputError, FileNotFoundError):
    """The SMPL-X model files are missing or not what they should be."""


def find_smplx_file(model_dir: str | os.PathLike | None, gender: str = "neutral") -> Path:
    """Locate ``SMPLX_<GENDER>.npz`` (or ``.pkl``) in model_dir, model_dir/smplx or $LHM_SMPLX_DIR."""
    if model_dir is None:
        model_dir = os.environ.get(MODEL_ENV)
    name = f"SMPLX_{gender.upper()}"
    if model_dir is None:
        raise SMPLXFilesError(
            f"No SMPL-X folder given. Pass the folder that holds {name}.npz (or set {MODEL_ENV}); "
            f"get the files from {SMPLX_DOWNLOAD}. The free body (load_body('free')) needs no files.")
    root = Path(model_dir).expanduser()
    if root.is_file():
        return root
    tried = []
    for folder in (root, root / "smplx", root / "human_model_files" / "smplx"):
        for ext in (".npz", ".pkl"):
            path = folder / f"{name}{ext}"
            tried.append(str(path))
            if path.is_file():
                return path
    raise SMPLXFilesError(
        f"SMPL-X model file {name}.npz not found in '{root}'. Looked for: {', '.join(tried)}. "
        f"Put {name}.npz (with SMPLX_MALE/FEMALE if you have them) in that folder; get them from {SMPLX_DOWNLOAD}.")


def load_smplx_body(model_dir: str | os.PathLike | None = None, gender: str = "neutral",
                    num_betas: int = 10, flame_vertex_ids: str | os.PathLike | None = None,
                    mano_vertex_ids: str | os.PathLike | None = None) -> Body:
    """Build the SMPL-X Body (flat hands, no PCA) from the official model files.

    Head and hand masks come from ``SMPL-X__FLAME_vertex_ids.npy`` / ``MANO_SMPLX_vertex_ids.pkl``
    when found next to the model file, otherwise from the skinning weights.
    """
    import smplx  # imported here so the free body never pays for it

    path = find_smplx_file(model_dir, gender)
    try:
        layer = smplx.SMPLX(str(path), ext=path.suffix[1:], gender=gender, num_betas=num_betas,
                            num_expression_coeffs=10, use_pca=False, flat_hand_mean=True,
                            use_face_contour=False)
    except (KeyError, AttributeError, ValueError, pickle.UnpicklingError, OSError, EOFError) as e:
        raise SMPLXFilesError(
            f"'{path}' is not a readable SMPL-X model file ({type(e).__name__}: {e}). "
            f"Download the official files from {SMPLX_DOWNLOAD}.") from e
    V = layer.v_template.shape[0]
    if V != NUM_VERTICES or layer.J_regressor.shape[0] < skeleton.NUM_JOINTS:
        raise SMPLXFilesError(f"'{path}' has {V} vertices and {layer.J_regressor.shape[0]} joints; "
                              f"SMPL-X has {NUM_VERTICES} and 55. Is it an SMPL or SMPL-H file?")
    J_reg = layer.J_regressor[: skeleton.NUM_JOINTS].float()
    v = layer.v_template.float()
    shapedirs = layer.shapedirs.float()
    weights = layer.lbs_weights.float()
    head, lhand, rhand = _region_masks(path.parent, weights, flame_vertex_ids, mano_vertex_ids)
    return Body(
        name="smplx",
        vertices=v,
        faces=layer.faces_tensor.long(),
        joints=J_reg @ v,
        weights=weights,
        shapedirs=shapedirs,
        joint_shapedirs=torch.einsum("jv,vcb->jcb", J_reg, shapedirs),
        head_mask=head,
        left_hand_mask=lhand,
        right_hand_mask=rhand,
    )


def masks_from_weights(weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Head, left-hand and right-hand vertex masks from the dominant skinning joint."""
    top = weights.argmax(dim=1)
    head = torch.isin(top, torch.tensor(skeleton.HEAD_JOINTS))
    wrists = (skeleton.JOINT_INDEX["left_wrist"], skeleton.JOINT_INDEX["right_wrist"])
    lhand = torch.isin(top, torch.tensor(skeleton.LEFT_HAND_JOINTS + wrists[:1]))
    rhand = torch.isin(top, torch.tensor(skeleton.RIGHT_HAND_JOINTS + wrists[1:]))
    return head, lhand, rhand


def _region_masks(folder: Path, weights: torch.Tensor, flame_ids, mano_ids):
    head, lhand, rhand = masks_from_weights(weights)
    V = weights.shape[0]
    flame = Path(flame_ids) if flame_ids else _first_existing(folder, "SMPL-X__FLAME_vertex_ids.npy")
    if flame is not None:
        head = torch.zeros(V, dtype=torch.bool)
        head[torch.as_tensor(np.load(flame), dtype=torch.long)] = True
    mano = Path(mano_ids) if mano_ids else _first_existing(folder, "MANO_SMPLX_vertex_ids.pkl")
    if mano is not None:
        with open(mano, "rb") as f:
            ids = pickle.load(f, encoding="latin1")
        lhand = torch.zeros(V, dtype=torch.bool)
        rhand = torch.zeros(V, dtype=torch.bool)
        lhand[torch.as_tensor(np.asarray(ids["left_hand"]), dtype=torch.long)] = True
        rhand[torch.as_tensor(np.asarray(ids["right_hand"]), dtype=torch.long)] = True
    return head, lhand, rhand


def _first_existing(folder: Path, name: str) -> Path | None:
    for candidate in (folder / name, folder.parent / name):
        if candidate.is_file():
            return candidate
    return None
