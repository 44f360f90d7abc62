"""The head encoder: DINOv2 plus the DPT-style fusion head (``encoder.*`` in the checkpoint, §2.4)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import LHMConfig
from .dinov2 import DinoVisionTransformer
from .preprocess import square_resize


class FusionHead(nn.Module):
    """DPTHead with ``use_clstoken=False``: a 1x1 conv per feature map, channel concat, 1x1 output conv.

    A 1x1 convolution on the token grid is the same linear map applied to every token, so the
    tokens are never reshaped into a grid; the row-major token order is the flattened grid order.
    The weights keep their Conv2d shapes ``[out,in,1,1]`` so checkpoint keys load unchanged.
    """

    def __init__(self, in_channels: int, inner_channels: int, out_channels: int, num_maps: int = 4):
        super().__init__()
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, inner_channels, 1) for _ in range(num_maps))
        self.output_conv = nn.Conv2d(inner_channels * num_maps, out_channels, 1)

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """features: ``num_maps`` tensors [B,T,in] -> fused tokens [B,T,out]."""
        projected = [F.linear(f, conv.weight.flatten(1), conv.bias) for f, conv in zip(features, self.projects, strict=True)]
        return F.linear(torch.cat(projected, dim=-1), self.output_conv.weight.flatten(1), self.output_conv.bias)


class DinoFusionEncoder(nn.Module):
    """Head image [B,3,H,W] in [0,1] -> head tokens [B,(res/14)^2,encoder_feat_dim].

    The input is padded to a square with white and resized to ``encoder_resolution`` (448) but, unlike
    standard DINOv2 use, not mean/std-normalised (reference §7.2).
    """

    def __init__(self, config: LHMConfig):
        super().__init__()
        self.resolution = config.encoder_resolution
        self.model = DinoVisionTransformer(config.dinov2)
        self.fusion_head = FusionHead(config.dinov2.embed_dim, config.encoder_feat_dim, config.encoder_feat_dim,
                                      len(config.dinov2.out_layers))

    def forward(self, head_image: torch.Tensor) -> torch.Tensor:
        x = square_resize(head_image, self.resolution)
        return self.fusion_head(self.model.intermediate_layers(x))
