"""Fourier embedding of the query points (``pcl_embed.*``, reference §2.6)."""
from __future__ import annotations

import math

import torch
from torch import nn


def fourier_basis(hidden_dim: int = 48, dtype=torch.float32) -> torch.Tensor:
    """The [3, hidden_dim/2] block-diagonal basis: row x holds pi*2^k (k < hidden_dim/6) in its block, etc."""
    n = hidden_dim // 6
    freqs = math.pi * 2.0 ** torch.arange(n, dtype=dtype)
    return torch.block_diag(freqs[None], freqs[None], freqs[None])


class PointEmbed(nn.Module):
    """Points [B,N,3] (raw SMPL-X metres) -> LayerNorm(Linear([sin(pB), cos(pB), p])) [B,N,dim]."""

    def __init__(self, dim: int, hidden_dim: int = 48):
        super().__init__()
        self.register_buffer("basis", fourier_basis(hidden_dim))
        self.mlp = nn.Linear(hidden_dim + 3, dim)
        self.norm = nn.LayerNorm(dim)  # default eps 1e-5, unlike the transformer's norms

    def forward(self, points: torch.Tensor) -> torch.Tensor:
        proj = points @ self.basis.to(points.dtype)
        return self.norm(self.mlp(torch.cat([proj.sin(), proj.cos(), points], dim=-1)))

    def reset_basis(self) -> None:
        """Recompute the (persistent) basis, e.g. when a checkpoint lacks it."""
        self.basis = fourier_basis(self.mlp.in_features - 3).to(self.mlp.weight.device)

