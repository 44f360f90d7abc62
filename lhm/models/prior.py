"""The per-query-point SMPL-X data the checkpoint carries (``renderer.smplx_model.*``, reference §3.3).

The official renderer registers per-point buffers copied from the nearest SMPL-X template vertex
and saves them with the weights; when a checkpoint holds them they win over recomputation (§7.18).
Only those inference reads are kept here: skinning weights, shape directions, the upper-body mask
(scale clamp 0.02) and the constrain mask (no skinning rotation). The others (``pose_dirs``,
``expr_dirs``, the 778 MB ``voxel_ws`` grid, the SMPL-X layer copy, ...) are never read from the file.
"""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import nn

from ..body import Body, skeleton
from ..body.canonical import CanonicalSpace, SurfaceSamples
from .weights import PriorFileError, find_prior_file

log = logging.getLogger(__name__)

CONSTRAIN_FILE = "voxel_grid/human_prior_constrain.npz"
# official persistent buffers of renderer.smplx_model that inference does not use (§6.2)
UNUSED_BUFFERS = ("pose_dirs", "expr_dirs", "voxel_ws", "voxel_bbox", "is_rhand", "is_lhand", "is_face",
                  "is_face_expr", "is_lower_body", "is_cavity", "smplx_layer.")
# main-branch upper_body_label: points skinned mostly to the trunk, arms or fingers (§3.3)
UPPER_BODY_JOINTS = tuple(skeleton.JOINT_INDEX[n] for n in (
    "pelvis", "spine1", "spine2", "spine3", "left_collar", "right_collar", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist")) + skeleton.LEFT_HAND_JOINTS + skeleton.RIGHT_HAND_JOINTS


class SMPLXPrior(nn.Module):
    """Persistent per-point buffers: skinning_weight [N,55], shape_dirs [N,3,B], is_upper_body / is_constrain_body [N]."""

    def __init__(self, num_points: int, num_betas: int):
        super().__init__()
        self.register_buffer("skinning_weight", torch.zeros(num_points, skeleton.NUM_JOINTS))
        self.register_buffer("shape_dirs", torch.zeros(num_points, 3, num_betas))
        self.register_buffer("is_upper_body", torch.zeros(num_points, dtype=torch.bool))
        self.register_buffer("is_constrain_body", torch.zeros(num_points, dtype=torch.bool))

    def fill(self, values: dict[str, torch.Tensor], only_missing: bool = True) -> list[str]:
        """Set buffers from ``values``; with ``only_missing`` only those still on the meta device. Returns the names set."""
        names = [n for n, b in self.named_buffers() if n in values and (b.is_meta or not only_missing)]
        for name in names:
            setattr(self, name, values[name])
        return names


def constrain_vertex_mask() -> torch.Tensor | None:
    """Per-SMPL-X-vertex mask ``human_prior_constrain.npz['masks'] > 0`` from the prior files, or None when absent."""
    try:
        path = find_prior_file(CONSTRAIN_FILE, "the constrain mask")
    except PriorFileError as e:
        log.warning("%s Gaussians will all follow the skinning rotation.", e)
        return None
    return torch.from_numpy(np.load(path)["masks"] > 0).reshape(-1)


def prior_buffers(body: Body, samples: SurfaceSamples, constrain: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The buffers as the official renderer computes them: nearest-template-vertex copies (§3.3)."""
    W = body.weights[samples.vertex_index]
    upper = torch.isin(W.argmax(dim=1), torch.tensor(UPPER_BODY_JOINTS))
    if constrain is None:
        constrain = torch.zeros(body.vertices.shape[0], dtype=torch.bool)
    return {"skinning_weight": W, "shape_dirs": body.shapedirs[samples.vertex_index], "is_upper_body": upper,
            "is_constrain_body": constrain[samples.vertex_index]}


def canonical_space(prior: SMPLXPrior, body: Body, samples: SurfaceSamples) -> CanonicalSpace:
    """Query points in the big pose with zero shape, skinned with the prior's (possibly loaded) weights (§3.4).

    The checkpoint's weights and shape directions override the body-derived ones.
    """
    return CanonicalSpace.from_samples(body, samples, prior.skinning_weight, prior.shape_dirs)
