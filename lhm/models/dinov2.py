"""DINOv2 ViT with register tokens (ViT-L/14-reg4 in every LHM size), in plain PyTorch.

Parameter names match the official ``encoder.model.*`` keys (reference §6.2): ``cls_token``,
``pos_embed``, ``register_tokens``, ``patch_embed.proj``, ``blocks.{i}`` (``norm1``, ``attn.qkv``,
``attn.proj``, ``ls1.gamma``, ``norm2``, ``mlp.fc1``, ``mlp.fc2``, ``ls2.gamma``) and ``norm``.
Only what LHM uses is here: the intermediate-layer read-out of §2.4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configs import DinoV2Config

LAYER_NORM_EPS = 1e-6


class PatchEmbed(nn.Module):
    """Non-overlapping patches to tokens: [B,3,H,W] -> [B,(H/p)(W/p),D]."""

    def __init__(self, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, dim, patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection (scale 1/sqrt(head dim))."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, D = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    """Two-layer feed-forward with exact GELU."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class LayerScale(nn.Module):
    """Per-channel residual scaling."""

    def __init__(self, dim: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale on both residual branches."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class DinoVisionTransformer(nn.Module):
    """The DINOv2 backbone; ``intermediate_layers`` gives the normed patch tokens of chosen blocks."""

    def __init__(self, config: DinoV2Config):
        super().__init__()
        self.config = config
        D = config.embed_dim
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, config.pos_grid**2 + 1, D))
        self.register_tokens = nn.Parameter(torch.zeros(1, config.num_register_tokens, D))
        self.patch_embed = PatchEmbed(config.patch_size, D)
        self.blocks = nn.ModuleList(Block(D, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(D, eps=LAYER_NORM_EPS)
        for p in (self.cls_token, self.pos_embed, self.register_tokens):
            nn.init.trunc_normal_(p, std=0.02)

    def interpolate_pos_encoding(self, grid_h: int, grid_w: int) -> torch.Tensor:
        """Position embeddings [1,1+h*w,D] for a grid_h x grid_w patch grid.

        The patch part is resampled bicubically with antialias from the stored grid, with
        ``scale_factor`` = new/old and no offset (interpolate_offset 0.0, reference §2.4); the class
        position is kept.
        """
        M = self.config.pos_grid
        if grid_h == M and grid_w == M:
            return self.pos_embed
        pos = self.pos_embed.float()
        patch = pos[:, 1:].reshape(1, M, M, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, scale_factor=(grid_h / M, grid_w / M), mode="bicubic", antialias=True)
        if patch.shape[-2:] != (grid_h, grid_w):
            raise RuntimeError(f"pos-embed interpolation gave {tuple(patch.shape[-2:])}, expected {(grid_h, grid_w)}")
        patch = patch.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, -1)
        return torch.cat([pos[:, :1], patch], dim=1).to(self.pos_embed.dtype)

    def prepare_tokens(self, image: torch.Tensor) -> torch.Tensor:
        """[B,3,H,W] -> [B,1+R+h*w,D]: cls, registers (no position embedding), patches."""
        B, _, H, W = image.shape
        p = self.config.patch_size
        x = self.patch_embed(image)
        x = torch.cat([self.cls_token.expand(B, -1, -1), x], dim=1)
        x = x + self.interpolate_pos_encoding(H // p, W // p)
        return torch.cat([x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]], dim=1)

    def intermediate_layers(self, image: torch.Tensor, layers: tuple[int, ...] | None = None) -> list[torch.Tensor]:
        """Normed patch tokens [B,h*w,D] after each block in ``layers`` (get_intermediate_layers, norm=True)."""
        layers = self.config.out_layers if layers is None else layers
        x = self.prepare_tokens(image)
        skip = 1 + self.config.num_register_tokens
        outputs = []
        for i, block in enumerate(self.blocks[: max(layers) + 1]):
            x = block(x)
            if i in layers:
                outputs.append(self.norm(x)[:, skip:])
        return outputs

