"""The Gaussian decoder (``renderer.*``, reference §2.8): per-point MLP, five heads, activations, clamps."""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

from .configs import LHMConfig
from .prior import SMPLXPrior

UPPER_BODY_SCALE_MAX = 0.02  # main-branch constrain_forward on is_upper_body points (§2.8, §7.12)
# ModuleDict order of the official GSLayer heads and their output widths (colour is RGB, gs_use_rgb)
HEADS = {"shs": 3, "scaling": 3, "xyz": 3, "opacity": 1, "rotation": 4}


@dataclass
class GaussianAttributes:
    """Decoded attributes, batch-first: offset [B,N,3] (added to the query points in the big pose),
    rgb [B,N,3] in [0,1], opacity [B,N], scale [B,N,3] (standard deviations), rotation [B,N,4] (w,x,y,z)."""

    offset: torch.Tensor
    rgb: torch.Tensor
    opacity: torch.Tensor
    scale: torch.Tensor
    rotation: torch.Tensor

    def to(self, *args, **kwargs) -> "GaussianAttributes":
        """Move/cast every tensor (like ``Tensor.to``)."""
        return GaussianAttributes(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})


class MLP(nn.Module):
    """``layers`` = Linear, SiLU, (Linear, SiLU) x (hidden-1), Linear; no output activation."""

    def __init__(self, dim_in: int, dim_out: int, n_neurons: int, n_hidden_layers: int):
        super().__init__()
        mods: list[nn.Module] = [nn.Linear(dim_in, n_neurons), nn.SiLU()]
        for _ in range(n_hidden_layers - 1):
            mods += [nn.Linear(n_neurons, n_neurons), nn.SiLU()]
        mods.append(nn.Linear(n_neurons, dim_out))
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class GSLayer(nn.Module):
    """The five linear heads (``out_layers.{shs,scaling,xyz,opacity,rotation}``) and their activations."""

    def __init__(self, dim: int, offset_max_step: float, scale_max: float):
        super().__init__()
        self.offset_max_step = offset_max_step
        self.scale_max = scale_max
        self.out_layers = nn.ModuleDict({name: nn.Linear(dim, width) for name, width in HEADS.items()})

    def forward(self, h: torch.Tensor) -> GaussianAttributes:
        out = {name: layer(h) for name, layer in self.out_layers.items()}
        return GaussianAttributes(
            offset=(torch.sigmoid(out["xyz"]) - 0.5) * self.offset_max_step,
            rgb=torch.sigmoid(out["shs"]),  # gs_sh is unused: the colour is a sigmoid RGB, no SH (§7.12)
            opacity=torch.sigmoid(out["opacity"])[..., 0],
            # "trunc_exp" is exp in the forward pass; the clip is the value at hyper_step(1e7), not 0.01
            scale=torch.exp(out["scaling"]).clamp(0.0, self.scale_max),
            rotation=F.normalize(out["rotation"], dim=-1),
        )


class GaussianRenderer(nn.Module):
    """Decodes transformer features [B,N,D] into Gaussian attributes; holds the per-point SMPL-X prior."""

    def __init__(self, config: LHMConfig):
        super().__init__()
        mlp = config.gs_mlp_network_config
        self.mlp_net = MLP(config.gs_query_dim, config.gs_query_dim, mlp["n_neurons"], mlp["n_hidden_layers"])
        self.gs_net = GSLayer(config.gs_query_dim, config.gs_xyz_offset_max_step, config.scale_clip)
        self.smplx_model = SMPLXPrior(config.dense_sample_pts, config.shape_param_dim)

    def forward(self, latent: torch.Tensor) -> GaussianAttributes:
        attrs = self.gs_net(self.mlp_net(latent))
        upper = self.smplx_model.is_upper_body[:, None]
        attrs.scale = torch.where(upper, attrs.scale.clamp(max=UPPER_BODY_SCALE_MAX), attrs.scale)
        return attrs
