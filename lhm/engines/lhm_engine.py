"""The LHM engine: cropped photo tensors -> an Avatar, with the official network and checkpoints.

It owns what surrounds the network at inference (reference §2.9): the Sapiens body encoder, head
super-resolution, the SMPL-X body with the dense query points in the canonical big pose, and the
conversion of decoded attributes into an ``lhm.Avatar`` that the shared posing, rendering and export
code take over. Photo cropping, segmentation and shape estimation happen before (``lhm.preprocess``).
"""
from __future__ import annotations

import logging
import os

import torch

from ..avatar import Avatar
from ..body import Body
from ..body.canonical import SurfaceSamples, load_dense_points
from ..body.smplx_body import MODEL_ENV as SMPLX_ENV
from ..body.smplx_body import SMPLXFilesError, load_smplx_body
from ..gaussians import Gaussians
from ..models.configs import LHMConfig, canonical_name, get_config, load_config
from ..models.gs_head import GaussianAttributes
from ..models.head_sr import BicubicHeadSR, HeadSuperResolution
from ..models.lhm import LHMNetwork, build_model
from ..models.prior import canonical_space, constrain_vertex_mask, prior_buffers
from ..models.sapiens import SapiensEncoder, find_sapiens, load_sapiens
from ..models.weights import (MODELS_ENV, PRIOR_URL, WEIGHTS_FILE, LoadReport, PriorFileError, find_prior_dir, find_prior_file, load_weights,
                              resolve_checkpoint)
from ..preprocess import PersonImage, lhm_inputs

log = logging.getLogger(__name__)

DENSE_POINTS_URL = "https://virutalbuy-public.oss-cn-hangzhou.aliyuncs.com/share/aigc3d/data/LHM/1_20000.ply"


def _prior_files(config: LHMConfig, smplx_dir, sapiens_path, dense_points):
    """Locate and load what a checkpoint of ``config`` needs besides its weights; a missing file fails with its source."""
    try:
        sapiens_file = find_sapiens(sapiens_path)
    except PriorFileError as e:
        raise PriorFileError(f"{config.name} needs the Sapiens body encoder: {e}") from e
    try:
        body = load_smplx_body(smplx_dir or os.environ.get(SMPLX_ENV) or find_prior_dir("human_model_files"),
                               num_betas=config.shape_param_dim)
    except SMPLXFilesError as e:
        raise SMPLXFilesError(f"{e} The LHM checkpoints need SMPL-X: the LHM prior files ({PRIOR_URL}) hold it "
                              f"in pretrained_models/human_model_files, found when {MODELS_ENV} names their folder.") from e
    n = config.dense_sample_pts
    points_file = dense_points or find_prior_file(
        f"dense_sample_points/1_{n}.ply", f"the {n} dense query points of {config.name}",
        hint=f"1_20000.ply (LHM-MINI) is also at {DENSE_POINTS_URL}")
    return sapiens_file, body, load_dense_points(points_file, n, body)


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class LHMEngine:
    """Runs an LHM network on one cropped photo and its head crop and returns an Avatar.

    network: the LHMNetwork (weights and per-point buffers complete); sapiens: the body encoder;
    body: the SMPL-X body; samples: the dense points (``1_{N}.ply``) on its template;
    head_sr: head super-resolution callable (bicubic fallback when None).
    """

    def __init__(self, network: LHMNetwork, sapiens: SapiensEncoder, body: Body, samples: SurfaceSamples,
                 head_sr: HeadSuperResolution | None = None, device: torch.device | str | None = None,
                 load_report: LoadReport | None = None):
        self.device = torch.device(device) if device is not None else default_device()
        self.config: LHMConfig = network.config
        self.network = network.to(self.device).eval().requires_grad_(False)
        self.sapiens = sapiens.to(self.device).eval()
        self.body = body.to(self.device)
        self.space = canonical_space(self.network.renderer.smplx_model, self.body, samples)
        self.head_sr = head_sr if head_sr is not None else BicubicHeadSR(self.config.encoder_resolution)
        self.load_report = load_report

    @property
    def dtype(self) -> torch.dtype:
        """Dtype of the network's weights (float32 unless loaded otherwise)."""
        return self.network.transformer.linear_cond_proj.weight.dtype

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, device: torch.device | str | None = None,
                        dtype: torch.dtype | None = None, smplx_dir: str | os.PathLike | None = None,
                        sapiens_path: str | os.PathLike | None = None, *, head_sr: HeadSuperResolution | None = None,
                        dense_points: str | os.PathLike | None = None, strict: bool = False) -> "LHMEngine":
        """Load an official checkpoint (``"LHM-500M"``, ``"3DAIGC/LHM-1B-HF"``, or a local folder).

        The network is built on the meta device and the checkpoint tensors are assigned directly
        on ``device``; weights are float32 as in the official runner unless ``dtype`` says otherwise
        (e.g. ``torch.bfloat16`` on a GPU to halve memory, at some cost in fidelity).
        ``smplx_dir``: folder with SMPLX_NEUTRAL.npz (default $LHM_SMPLX_DIR or the prior files'
        human_model_files); ``sapiens_path``: the Sapiens TorchScript (default $LHM_SAPIENS_PATH or
        the prior files); ``dense_points``: the ``1_{N}.ply`` file (default from the prior files).
        Every required file is located before the weights are read, so a missing one fails fast
        with a message saying where to get it.
        """
        device = torch.device(device) if device is not None else default_device()
        known = canonical_name(name_or_path)
        # an official name says what the prior files must be: check them before a checkpoint download of GBs
        expected = get_config(known) if known else None
        located = _prior_files(expected, smplx_dir, sapiens_path, dense_points) if expected else None
        folder = resolve_checkpoint(name_or_path)
        config = load_config(folder, name=str(name_or_path))
        if located is None or ((expected.shape_param_dim, expected.dense_sample_pts)
                               != (config.shape_param_dim, config.dense_sample_pts)):
            located = _prior_files(config, smplx_dir, sapiens_path, dense_points)
        sapiens_file, body, samples = located
        network = build_model(config, "meta")
        report = load_weights(network, folder / WEIGHTS_FILE, device=device, dtype=dtype,
                              skip=LHMNetwork.is_unused_key, strict=strict)
        constrain = constrain_vertex_mask() if "renderer.smplx_model.is_constrain_body" in report.missing else None
        computed = network.complete(prior_buffers(body, samples, constrain))
        if report.unexpected:
            log.warning("checkpoint keys this network does not know were ignored: %s", ", ".join(report.unexpected[:10]))
        log.info("%s\n  computed from SMPL-X: %s", report, ", ".join(computed) or "nothing")
        sapiens = load_sapiens(sapiens_file, device, resolution=config.fine_encoder_resolution)
        return cls(network, sapiens, body, samples, head_sr=head_sr, device=device, load_report=report)

    @torch.no_grad()
    def encode_body(self, image: torch.Tensor) -> torch.Tensor:
        """Cropped body image [1,3,H,W] in [0,1] (white background) -> Sapiens tokens [1,T,C]."""
        return self.sapiens(image.to(self.device))

    @torch.no_grad()
    def encode_head(self, head_image: torch.Tensor) -> torch.Tensor:
        """Head crop [1,3,112,112] in [0,1] -> super-resolved -> DINOv2-fusion tokens [1,T_head,C_head]."""
        sr = self.head_sr(head_image.to(self.device, torch.float32))
        return self.network.encode_head(sr.to(self.dtype))

    @torch.no_grad()
    def transform(self, body_tokens: torch.Tensor, head_tokens: torch.Tensor) -> torch.Tensor:
        """Encoded tokens -> per-query-point features [1,N,D] (point embedding, body-head transformer)."""
        points = self.space.points[None].to(self.dtype)
        return self.network.forward_latent(body_tokens.to(self.dtype), head_tokens.to(self.dtype), points)

    @torch.no_grad()
    def decode(self, latent: torch.Tensor) -> GaussianAttributes:
        """Per-point features -> Gaussian attributes (MLP, heads, activations, clamps), in float32."""
        return self.network.renderer(latent).to(torch.float32)

    def to_avatar(self, attrs: GaussianAttributes, betas: torch.Tensor) -> Avatar:
        """Gaussians at query points + offsets in the canonical big pose, rigged on the SMPL-X body."""
        gaussians = Gaussians(self.space.points + attrs.offset[0], attrs.rotation[0], attrs.scale[0],
                              attrs.opacity[0], attrs.rgb[0])
        betas = torch.as_tensor(betas, dtype=torch.float32, device=self.device).reshape(-1)
        return Avatar.from_canonical(self.space, self.body, gaussians, betas=betas,
                                     rigid_mask=self.network.renderer.smplx_model.is_constrain_body,
                                     info={"engine": "lhm", "model": self.config.name})

    def reconstruct(self, image: torch.Tensor, head_image: torch.Tensor, betas: torch.Tensor) -> Avatar:
        """One photo to an Avatar.

        image [1,3,H,W] in [0,1]: the body crop with white background (reference §4.1);
        head_image [1,3,112,112] in [0,1] (§4.2); betas [10]: SMPL-X shape of the person (§4.3).
        The encoders run once; nothing is kept between calls.
        """
        for label, t in (("image", image), ("head_image", head_image)):
            if t.dim() != 4 or t.shape[0] != 1 or t.shape[1] != 3:
                raise ValueError(f"{label} must be [1,3,H,W], got {tuple(t.shape)}")
        latent = self.transform(self.encode_body(image), self.encode_head(head_image))
        return self.to_avatar(self.decode(latent), betas)

    def reconstruct_person(self, person: PersonImage, progress=None) -> Avatar:
        """A prepared photo (fitted on this engine's SMPL-X body) to an Avatar, with the official crops (§4.1, §4.2)."""
        progress = progress or (lambda fraction, desc: None)
        crop, fit = person.crop, person.fit
        x0, y0, x1, y1 = fit.head_box
        # the head box is in crop pixels; the head image is cut from the loaded photo (§4.2)
        head_box = (crop.box[0] + x0 / crop.scale, crop.box[1] + y0 / crop.scale,
                    crop.box[0] + x1 / crop.scale, crop.box[1] + y1 / crop.scale)
        image, head = lhm_inputs(person.image.rgb, person.segmentation.mask, head_box, self.config.source_size)
        progress(0.1, f"running {self.config.name}")
        avatar = self.reconstruct(image, head, fit.betas)
        progress(1.0, "decoded")
        return avatar
