"""The Gaussian splat container shared by every stage (engines, posing, rendering, export)."""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import torch


@dataclass
class Gaussians:
    """3D Gaussians as tensors with any leading batch shape ``[..., N, k]``.

    means [...,N,3] world metres; quats [...,N,4] unit quaternions (w, x, y, z);
    scales [...,N,3] standard deviations in metres (not log); opacities [...,N] in [0,1];
    colors [...,N,3] linear RGB in [0,1], or SH coefficients [...,N,K,3] (K = (degree+1)^2).
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor

    def __post_init__(self) -> None:
        n = self.means.shape[:-1]
        for name, tail in (("quats", 4), ("scales", 3)):
            t = getattr(self, name)
            if t.shape[:-1] != n or t.shape[-1] != tail:
                raise ValueError(f"Gaussians.{name} has shape {tuple(t.shape)}, expected {(*n, tail)}")
        if self.means.shape[-1] != 3:
            raise ValueError(f"Gaussians.means has shape {tuple(self.means.shape)}, expected [..., N, 3]")
        if self.opacities.shape != n:
            raise ValueError(f"Gaussians.opacities has shape {tuple(self.opacities.shape)}, expected {tuple(n)}")
        if self.colors.shape[: len(n)] != n or self.colors.shape[-1] != 3 or self.colors.dim() not in (len(n) + 1, len(n) + 2):
            raise ValueError(f"Gaussians.colors has shape {tuple(self.colors.shape)}, expected {(*n, 3)} or {(*n, 'K', 3)}")

    def __len__(self) -> int:
        return self.means.shape[-2]

    @property
    def batch_shape(self) -> torch.Size:
        """Leading shape before the Gaussian axis (empty for a single set)."""
        return self.means.shape[:-2]

    @property
    def sh_degree(self) -> int | None:
        """SH degree of ``colors``, or None when colours are plain RGB."""
        if self.colors.dim() == self.means.dim():
            return None
        return int(round(self.colors.shape[-2] ** 0.5)) - 1

    def to(self, *args, **kwargs) -> "Gaussians":
        """Move/cast every tensor (like ``Tensor.to``)."""
        return Gaussians(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})

    def detach(self) -> "Gaussians":
        """A copy with every tensor detached from the autograd graph."""
        return Gaussians(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def select(self, index) -> "Gaussians":
        """Index the Gaussian axis (mask, indices or slice)."""
        return Gaussians(**{f.name: _take(getattr(self, f.name), index, self.means.dim()) for f in fields(self)})

    def frame(self, i: int) -> "Gaussians":
        """The i-th element of the first batch dimension."""
        return Gaussians(**{f.name: getattr(self, f.name)[i] for f in fields(self)})

    def replace(self, **changes) -> "Gaussians":
        """A copy with some fields replaced."""
        return replace(self, **changes)


def _take(t: torch.Tensor, index, means_dim: int) -> torch.Tensor:
    # the Gaussian axis is means_dim-2 for every field (colors may carry an extra SH axis after it)
    axis = means_dim - 2
    return t[(slice(None),) * axis + (index,)]
