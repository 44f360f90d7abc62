"""The LHM network (``ModelHumanLRMSapdinoBodyHeadSD3_5``, reference §2): tokens in, Gaussian attributes out.

Its ``state_dict`` has the official key names and shapes (§6.2): ``encoder.model.*`` (DINOv2),
``encoder.fusion_head.*``, ``pcl_embed.*``, ``transformer.*``, ``renderer.mlp_net.*``,
``renderer.gs_net.out_layers.*``, ``motion_embed_mlp.*`` and the per-point buffers
``renderer.smplx_model.*`` that inference uses. Sapiens (the body encoder) is not part of it: the
checkpoint does not carry it, it is loaded from its own TorchScript file (``sapiens.py``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import LHMConfig, get_config
from .fusion import DinoFusionEncoder
from .gs_head import GaussianAttributes, GaussianRenderer
from .point_embed import PointEmbed
from .prior import UNUSED_BUFFERS
from .transformer import BodyHeadTransformer
from .weights import CheckpointError, meta_tensor_names

# checkpoint tensors inference never reads: training-only modules, unused DINOv2 mask token, unused prior buffers
UNUSED_PREFIXES = ("id_face_net.", "fine_encoder.", "encoder.model.mask_token",
                   *(f"renderer.smplx_model.{name}" for name in UNUSED_BUFFERS))


class LHMNetwork(nn.Module):
    """Image tokens and query points -> Gaussian attributes, with the official parameter layout."""

    def __init__(self, config: LHMConfig):
        super().__init__()
        self.config = config
        fine = config.fine_encoder_feat_dim
        self.encoder = DinoFusionEncoder(config)
        self.pcl_embed = PointEmbed(config.pcl_dim)
        self.transformer = BodyHeadTransformer(config.transformer_dim, config.transformer_heads,
                                               config.transformer_layers, cond_dim=fine)
        self.renderer = GaussianRenderer(config)
        # "motion" embedding in the official naming, but computed from the image (§7.7)
        self.motion_embed_mlp = nn.Sequential(nn.Linear(fine, fine // 2), nn.SiLU(),
                                              nn.Linear(fine // 2, 2 * config.transformer_dim))

    def encode_head(self, head_image: torch.Tensor) -> torch.Tensor:
        """Super-resolved head image [B,3,H,W] in [0,1] -> head tokens [B,T_head,encoder_feat_dim]."""
        return self.encoder(head_image)

    def forward_latent(self, body_tokens: torch.Tensor, head_tokens: torch.Tensor, query_points: torch.Tensor) -> torch.Tensor:
        """Sapiens tokens [B,T_body,C], head tokens [B,T_head,C_head], query points [B,N,3] -> features [B,N,D] (§2.5-2.7)."""
        if body_tokens.shape[1] != self.config.fine_encoder_tokens:
            raise ValueError(f"the body encoder gave {body_tokens.shape[1]} tokens; this network splits its context "
                             f"after {self.config.fine_encoder_tokens} (Sapiens at {self.config.fine_encoder_resolution} px)")
        # head features are zero-padded to the body width and share linear_cond_proj; body tokens come first (§7.5)
        head = F.pad(head_tokens, (0, body_tokens.shape[-1] - head_tokens.shape[-1]))
        cond = torch.cat([body_tokens, head], dim=1)
        # the conditioning vector is an MLP of the mean-pooled raw Sapiens tokens, shared by all layers (§7.7)
        temb = self.motion_embed_mlp(body_tokens.mean(dim=1))
        return self.transformer(self.pcl_embed(query_points), cond, temb, self.config.fine_encoder_tokens)

    def forward(self, body_tokens: torch.Tensor, head_image: torch.Tensor, query_points: torch.Tensor) -> GaussianAttributes:
        """Full network pass: body tokens, super-resolved head image and query points -> Gaussian attributes."""
        latent = self.forward_latent(body_tokens, self.encode_head(head_image), query_points)
        return self.renderer(latent)

    @staticmethod
    def is_unused_key(key: str) -> bool:
        """Whether a checkpoint key belongs to what inference does not need (never read from the file)."""
        return key.startswith(UNUSED_PREFIXES)

    def complete(self, prior_values: dict[str, torch.Tensor]) -> list[str]:
        """Compute the buffers a checkpoint did not provide (still on meta); returns their names.

        Raises CheckpointError if parameters are missing: weights cannot be computed.
        """
        computed = []
        if self.pcl_embed.basis.is_meta:
            self.pcl_embed.reset_basis()
            computed.append("pcl_embed.basis")
        computed += [f"renderer.smplx_model.{n}" for n in self.renderer.smplx_model.fill(prior_values)]
        params, buffers = meta_tensor_names(self)
        if params or buffers:
            missing = params + buffers
            raise CheckpointError(f"the checkpoint lacks {len(missing)} tensors the network needs: "
                                  + ", ".join(missing[:10]) + (" ..." if len(missing) > 10 else ""))
        return computed


def build_model(config: str | LHMConfig, device: torch.device | str | None = None) -> LHMNetwork:
    """Build the network of an official size (``"LHM-500M"``), ``"LHM-TINY"`` or a config.

    ``device="meta"`` allocates nothing (for inspection, or to load a checkpoint with assignment);
    otherwise parameters are randomly initialised on ``device`` (CPU by default).
    """
    if isinstance(config, str):
        config = get_config(config)
    with torch.device(device or "cpu"):
        return LHMNetwork(config)
