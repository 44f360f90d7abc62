"""The body-head multimodal transformer (``transformer.*``, reference §2.7), in plain PyTorch.

Each layer holds two SD3-style joint blocks: ``head_dit`` (head queries with the DINOv2 context)
runs first, then ``body_dit`` (all queries with the Sapiens context). Module and parameter names
follow diffusers 0.32.0's ``JointTransformerBlock``/``Attention`` so the official keys load:
``norm1.linear``, ``norm1_context.linear``, ``attn.{to_q,...,to_out.0,to_add_out}``,
``ff.net.{0.proj,2}``, ``ff_context.net.{0.proj,2}``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NORM_EPS = 1e-6
BODY_FRACTION = 0.75  # the first 75 % of the query points are body samples, the rest head (§7.6)


def modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """LN(x)·(1+scale)+shift with a parameter-free LayerNorm (eps 1e-6) and per-sample shift/scale [B,D]."""
    x = F.layer_norm(x, x.shape[-1:], eps=NORM_EPS)
    return x * (1 + scale[:, None]) + shift[:, None]


class AdaLayerNormZero(nn.Module):
    """Six modulation vectors from temb, in diffusers' order: shift, scale, gate (attention), shift, scale, gate (MLP)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 6 * dim)

    def forward(self, temb: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.linear(F.silu(temb)).chunk(6, dim=-1)


class AdaLayerNormContinuous(nn.Module):
    """The context norm of a context-pre-only block: note its chunk order is scale first, then shift (§7.8)."""

    def __init__(self, dim: int):
        super().__init__()
        self.linear = nn.Linear(dim, 2 * dim)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.linear(F.silu(temb)).chunk(2, dim=-1)
        return modulate(x, shift, scale)


class RMSNorm(nn.Module):
    """RMS normalisation over the last axis with a learned weight, computed in float32 (diffusers' RMSNorm)."""

    def __init__(self, dim: int, eps: float = NORM_EPS):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x.float(), x.shape[-1:], self.weight.float(), self.eps).to(x.dtype)


class JointAttention(nn.Module):
    """Joint attention of a query stream and a context stream (diffusers' JointAttnProcessor2_0).

    Both streams are projected separately, q/k are RMS-normalised per head (64-d), then one SDPA
    runs over the concatenation [queries, context]; no mask, no positional encoding.
    """

    def __init__(self, dim: int, heads: int, context_pre_only: bool):
        super().__init__()
        self.heads = heads
        head_dim = dim // heads
        self.to_q, self.to_k, self.to_v = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_q, self.norm_k = RMSNorm(head_dim), RMSNorm(head_dim)
        self.add_q_proj, self.add_k_proj, self.add_v_proj = (nn.Linear(dim, dim) for _ in range(3))
        self.norm_added_q, self.norm_added_k = RMSNorm(head_dim), RMSNorm(head_dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])
        # the last layer still projects (and normalises) its context q/k/v but emits no context output
        self.to_add_out = None if context_pre_only else nn.Linear(dim, dim)

    def _heads(self, t: torch.Tensor) -> torch.Tensor:
        B, N, D = t.shape
        return t.view(B, N, self.heads, D // self.heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        q = torch.cat([self.norm_q(self._heads(self.to_q(x))), self.norm_added_q(self._heads(self.add_q_proj(ctx)))], dim=2)
        k = torch.cat([self.norm_k(self._heads(self.to_k(x))), self.norm_added_k(self._heads(self.add_k_proj(ctx)))], dim=2)
        v = torch.cat([self._heads(self.to_v(x)), self._heads(self.add_v_proj(ctx))], dim=2)
        out = F.scaled_dot_product_attention(q, k, v)
        B, _, L, _ = out.shape
        out = out.transpose(1, 2).reshape(B, L, -1)
        n = x.shape[1]
        a = self.to_out[0](out[:, :n])
        return a, (None if self.to_add_out is None else self.to_add_out(out[:, n:]))


class GELUProj(nn.Module):
    """Linear then tanh-approximate GELU (diffusers' ``GELU`` activation module)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj = nn.Linear(dim, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate="tanh")


class FeedForward(nn.Module):
    """diffusers' FeedForward(activation_fn="gelu-approximate"); index 1 stands for its p=0 dropout so keys line up."""

    def __init__(self, dim: int, mult: int = 4):
        super().__init__()
        self.net = nn.ModuleList([GELUProj(dim, mult * dim), nn.Identity(), nn.Linear(mult * dim, dim)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.net:
            x = layer(x)
        return x


class JointBlock(nn.Module):
    """One SD3 joint block (LHM's ``SD3MMJointTransformerBlock``) with AdaLN-Zero modulation by temb.

    ``context_pre_only`` (the last layer) modulates the context with AdaLayerNormContinuous and
    returns no context.
    """

    def __init__(self, dim: int, heads: int, context_pre_only: bool):
        super().__init__()
        self.context_pre_only = context_pre_only
        self.norm1 = AdaLayerNormZero(dim)
        self.norm1_context = AdaLayerNormContinuous(dim) if context_pre_only else AdaLayerNormZero(dim)
        self.attn = JointAttention(dim, heads, context_pre_only)
        self.ff = FeedForward(dim)
        if not context_pre_only:
            self.ff_context = FeedForward(dim)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, temb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = self.norm1(temb)
        nx = modulate(x, shift_msa, scale_msa)
        if self.context_pre_only:
            nctx = self.norm1_context(ctx, temb)
        else:
            c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = self.norm1_context(temb)
            nctx = modulate(ctx, c_shift_msa, c_scale_msa)
        a, actx = self.attn(nx, nctx)
        x = x + gate_msa[:, None] * a
        x = x + gate_mlp[:, None] * self.ff(modulate(x, shift_mlp, scale_mlp))
        if self.context_pre_only:
            return x, None
        ctx = ctx + c_gate_msa[:, None] * actx
        f = self.ff_context(modulate(ctx, c_shift_mlp, c_scale_mlp))
        # the official block adds the context FF output twice, gated then un-gated (§7.9); the
        # released weights were trained with it
        ctx = ctx + c_gate_mlp[:, None] * f
        return x, ctx + f


class BodyHeadBlock(nn.Module):
    """LHM's ``SD3BodyHeadMMJointTransformerBlock``: the head block, then the body block over all queries."""

    def __init__(self, dim: int, heads: int, context_pre_only: bool):
        super().__init__()
        self.head_dit = JointBlock(dim, heads, context_pre_only)
        self.body_dit = JointBlock(dim, heads, context_pre_only)

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, temb: torch.Tensor,
                num_body_ctx: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [B,N,D] (body then head queries), ctx [B,T,D] (body then head tokens), temb [B,2D]."""
        nb = int(x.shape[1] * BODY_FRACTION)
        D = x.shape[-1]
        body_temb, head_temb = temb[:, :D], temb[:, D:]
        xh, ch = self.head_dit(x[:, nb:], ctx[:, num_body_ctx:], head_temb)
        x, cb = self.body_dit(torch.cat([x[:, :nb], xh], dim=1), ctx[:, :num_body_ctx], body_temb)
        return x, (None if cb is None else torch.cat([cb, ch], dim=1))


class BodyHeadTransformer(nn.Module):
    """``TransformerDecoder(block_type="sd3_mm_bh_cond")``: context projection, L body-head layers, final LayerNorm."""

    def __init__(self, dim: int, heads: int, num_layers: int, cond_dim: int):
        super().__init__()
        self.linear_cond_proj = nn.Linear(cond_dim, dim)
        self.layers = nn.ModuleList(BodyHeadBlock(dim, heads, i == num_layers - 1) for i in range(num_layers))
        self.norm = nn.LayerNorm(dim, eps=NORM_EPS)

    def forward(self, x: torch.Tensor, cond: torch.Tensor, temb: torch.Tensor, num_body_ctx: int) -> torch.Tensor:
        """x [B,N,D] embedded queries, cond [B,T,cond_dim] raw context, temb [B,2D] -> [B,N,D]."""
        ctx = self.linear_cond_proj(cond)
        for layer in self.layers:
            x, ctx = layer(x, ctx, temb, num_body_ctx)
        return self.norm(x)
