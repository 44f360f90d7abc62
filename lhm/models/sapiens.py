"""The body encoder: Sapiens-1B from its TorchScript file, with LHM's pre-processing (reference §2.3).

Sapiens is not in the LHM checkpoint; its TorchScript file comes with the official prior files at
``pretrained_models/sapiens/pretrained/checkpoints/sapiens_1b/sapiens_1b_epoch_173_torchscript.pt2``.
Any module with the same contract can stand in: input [B,3,R,R] normalised RGB, output [B,C,R/16,R/16]
(or a 1-tuple of it). ``RandomSapiens`` is such a stand-in for tests and benchmarks.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .preprocess import square_resize
from .weights import PriorFileError, find_prior_file

SAPIENS_FILE = "sapiens/pretrained/checkpoints/sapiens_1b/sapiens_1b_epoch_173_torchscript.pt2"
SAPIENS_ENV = "LHM_SAPIENS_PATH"
# Sapiens' pixel statistics (123.5/116.5/103.5 and 58.5/57.0/57.5 over 255), RGB order
SAPIENS_MEAN = (0.4844, 0.4570, 0.4062)
SAPIENS_STD = (0.2295, 0.2236, 0.2256)


class SapiensEncoder(nn.Module):
    """Body image [B,3,H,W] in [0,1] (white background) -> tokens [B,(R/16)^2,C] in float32.

    Pads to a white square, resizes to ``resolution`` like kornia, normalises with Sapiens'
    statistics, runs the backbone (bf16 autocast on CUDA as the official code, plain float32
    elsewhere) and flattens the feature map row-major.
    """

    def __init__(self, backbone: nn.Module, resolution: int = 1024):
        super().__init__()
        self.backbone = backbone
        self.resolution = resolution
        self.register_buffer("mean", torch.tensor(SAPIENS_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(SAPIENS_STD).view(1, 3, 1, 1), persistent=False)

    @torch.no_grad()
    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = (square_resize(image.float(), self.resolution) - self.mean) / self.std
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=x.device.type == "cuda"):
            out = self.backbone(x)
        if isinstance(out, (tuple, list)):
            out = out[0]
        if out.dim() != 4:
            raise ValueError(f"the Sapiens backbone returned shape {tuple(out.shape)}, expected [B,C,h,w]")
        return out.float().flatten(2).transpose(1, 2)


def find_sapiens(path: str | os.PathLike | None = None) -> Path:
    """Locate the Sapiens-1B TorchScript: ``path``, $LHM_SAPIENS_PATH, or the prior-files layout."""
    path = path or os.environ.get(SAPIENS_ENV)
    if path is not None:
        path = Path(path).expanduser()
        if path.is_file():
            return path
        raise PriorFileError(f"Sapiens TorchScript file '{path}' does not exist. It is "
                             f"pretrained_models/{SAPIENS_FILE} of the LHM prior files.")
    return find_prior_file(SAPIENS_FILE, "the Sapiens-1B TorchScript body encoder",
                           hint=f"or set {SAPIENS_ENV} to the .pt2 file")


def load_sapiens(path: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                 resolution: int = 1024) -> SapiensEncoder:
    """Load the Sapiens TorchScript (frozen, eval mode) as a SapiensEncoder on ``device``."""
    file = find_sapiens(path)
    try:
        with warnings.catch_warnings():
            # the official file is TorchScript, which only torch.jit.load reads (deprecated in recent torch)
            warnings.filterwarnings("ignore", category=DeprecationWarning)
            backbone = torch.jit.load(str(file), map_location=device)
    except RuntimeError as e:
        raise PriorFileError(f"'{file}' is not a loadable TorchScript file ({e}).") from e
    backbone.eval()
    for p in backbone.parameters():
        p.requires_grad_(False)
    return SapiensEncoder(backbone, resolution).to(device)


class RandomSapiens(nn.Module):
    """A random stand-in with the Sapiens output contract: [B,3,R,R] -> ([B,dim,R/patch,R/patch],).

    A single patchifying convolution: cheap, deterministic under a seed, no weights to download.
    It has none of Sapiens-1B's compute cost.
    """

    def __init__(self, dim: int = 1536, patch: int = 16):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch, stride=patch)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor]:
        return (F.gelu(self.proj(x)),)
