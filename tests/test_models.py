"""The LHM network: official layout, components against plain re-computations, checkpoint loading, engine.

Full-size networks are only built on the meta device; everything that runs uses the tiny config.
Re-computations follow the reference text (§2.3-2.8) written out with elementary tensor operations.
"""
from __future__ import annotations

import json
import math
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lhm
from lhm.body.canonical import sample_surface
from lhm.models import (CONFIGS, CheckpointError, CheckpointNotFoundError, PriorFileError, RandomSapiens,
                        SapiensEncoder, build_model, config_from_json, get_config, load_sapiens, save_pretrained)
from lhm.models.configs import DinoV2Config
from lhm.models.dinov2 import DinoVisionTransformer
from lhm.models.fusion import FusionHead
from lhm.models.point_embed import PointEmbed
from lhm.models.preprocess import pad_to_square, resize
from lhm.models.prior import prior_buffers
from lhm.models.sapiens import SAPIENS_FILE
from lhm.models.transformer import BodyHeadBlock, JointBlock
from lhm.render import render

TINY = CONFIGS["LHM-TINY"]
SIZES = {"LHM-MINI": (2, 20000), "LHM-500M": (5, 40000), "LHM-500M-HF": (5, 40000),
         "LHM-1B": (15, 40000), "LHM-1B-HF": (15, 40000)}


# ---------------------------------------------------------------------------------------------
# official layout (reference §6.2) and parameter counts (§2.7)

def _expected_layout(L: int, N: int) -> dict[str, tuple[int, ...]]:
    """Every key and shape of §6.2 for L layers and N query points (plus the prior buffers we keep)."""
    D, E = 1024, {}
    E.update({"encoder.model.cls_token": (1, 1, D), "encoder.model.pos_embed": (1, 1370, D),
              "encoder.model.register_tokens": (1, 4, D), "encoder.model.patch_embed.proj.weight": (D, 3, 14, 14),
              "encoder.model.patch_embed.proj.bias": (D,), "encoder.model.norm.weight": (D,), "encoder.model.norm.bias": (D,)})
    for i in range(24):
        b = f"encoder.model.blocks.{i}."
        E.update({b + "norm1.weight": (D,), b + "norm1.bias": (D,),
                  b + "attn.qkv.weight": (3 * D, D), b + "attn.qkv.bias": (3 * D,),
                  b + "attn.proj.weight": (D, D), b + "attn.proj.bias": (D,), b + "ls1.gamma": (D,), b + "norm2.weight": (D,),
                  b + "norm2.bias": (D,), b + "mlp.fc1.weight": (4 * D, D), b + "mlp.fc1.bias": (4 * D,),
                  b + "mlp.fc2.weight": (D, 4 * D), b + "mlp.fc2.bias": (D,), b + "ls2.gamma": (D,)})
    for i in range(4):
        E.update({f"encoder.fusion_head.projects.{i}.weight": (D, D, 1, 1), f"encoder.fusion_head.projects.{i}.bias": (D,)})
    E.update({"encoder.fusion_head.output_conv.weight": (D, 4 * D, 1, 1), "encoder.fusion_head.output_conv.bias": (D,),
              "pcl_embed.basis": (3, 24), "pcl_embed.mlp.weight": (D, 51), "pcl_embed.mlp.bias": (D,),
              "pcl_embed.norm.weight": (D,), "pcl_embed.norm.bias": (D,),
              "motion_embed_mlp.0.weight": (768, 1536), "motion_embed_mlp.0.bias": (768,),
              "motion_embed_mlp.2.weight": (2048, 768), "motion_embed_mlp.2.bias": (2048,),
              "transformer.linear_cond_proj.weight": (D, 1536), "transformer.linear_cond_proj.bias": (D,),
              "transformer.norm.weight": (D,), "transformer.norm.bias": (D,)})
    for i in range(L):
        last = i == L - 1
        for sub in ("head_dit", "body_dit"):
            b = f"transformer.layers.{i}.{sub}."
            E.update({b + "norm1.linear.weight": (6 * D, D), b + "norm1.linear.bias": (6 * D,),
                      b + "norm1_context.linear.weight": ((2 if last else 6) * D, D),
                      b + "norm1_context.linear.bias": ((2 if last else 6) * D,)})
            linears = ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj", "to_out.0")
            for name in linears + (() if last else ("to_add_out",)):
                E.update({b + f"attn.{name}.weight": (D, D), b + f"attn.{name}.bias": (D,)})
            for name in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
                E[b + f"attn.{name}.weight"] = (64,)
            for ff in ("ff",) + (() if last else ("ff_context",)):
                E.update({b + f"{ff}.net.0.proj.weight": (4 * D, D), b + f"{ff}.net.0.proj.bias": (4 * D,),
                          b + f"{ff}.net.2.weight": (D, 4 * D), b + f"{ff}.net.2.bias": (D,)})
    E.update({"renderer.mlp_net.layers.0.weight": (512, D), "renderer.mlp_net.layers.0.bias": (512,),
              "renderer.mlp_net.layers.2.weight": (512, 512), "renderer.mlp_net.layers.2.bias": (512,),
              "renderer.mlp_net.layers.4.weight": (D, 512), "renderer.mlp_net.layers.4.bias": (D,)})
    for name, width in (("shs", 3), ("scaling", 3), ("xyz", 3), ("opacity", 1), ("rotation", 4)):
        E.update({f"renderer.gs_net.out_layers.{name}.weight": (width, D), f"renderer.gs_net.out_layers.{name}.bias": (width,)})
    E.update({"renderer.smplx_model.skinning_weight": (N, 55), "renderer.smplx_model.shape_dirs": (N, 3, 10),
              "renderer.smplx_model.is_upper_body": (N,), "renderer.smplx_model.is_constrain_body": (N,)})
    return E


@pytest.mark.parametrize("name", list(SIZES))
def test_official_layout_on_meta(name):
    L, N = SIZES[name]
    model = build_model(name, "meta")
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    want = _expected_layout(L, N)
    assert sorted(set(got) ^ set(want)) == []
    assert {k: s for k, s in got.items() if want[k] != s} == {}
    assert all(p.is_meta for p in model.parameters())


@pytest.mark.parametrize("name,transformer", [("LHM-MINI", 125.4), ("LHM-500M", 352.1), ("LHM-1B", 1107.7)])
def test_parameter_counts(name, transformer):
    model = build_model(name, "meta")

    def millions(module):
        return sum(p.numel() for p in module.parameters()) / 1e6

    assert round(millions(model.transformer), 1) == transformer
    assert round(millions(model.encoder.model), 1) == 304.4
    assert round(millions(model.encoder.fusion_head), 2) == 8.39
    assert round(millions(model.pcl_embed) + millions(model.motion_embed_mlp) + millions(model.renderer), 2) == 4.14


# ---------------------------------------------------------------------------------------------
# configs

def test_config_json_of_an_official_checkpoint():
    # the model: block of configs/inference/human-lrm-1B.yaml, as convert_hf.py writes it (§1.2)
    official = {"model_name": "SapDinoLRMBHSD3_5", "encoder_type": "dinov2_fusion", "encoder_model_name": "dinov2_vitl14_reg",
                "encoder_feat_dim": 1024, "encoder_freeze": False, "fine_encoder_type": "sapiens",
                "fine_encoder_model_name": "./pretrained_models/sapiens/pretrained/checkpoints/sapiens_1b/"
                                           "sapiens_1b_epoch_173_torchscript.pt2",
                "fine_encoder_feat_dim": 1536, "fine_encoder_freeze": True, "use_face_id": True,
                "latent_query_points_type": "e2e_smplx_sub1", "pcl_dim": 1024, "facesr": True,
                "transformer_type": "sd3_mm_bh_cond", "transformer_heads": 16, "transformer_dim": 1024, "transformer_layers": 15,
                "tf_grad_ckpt": True, "encoder_grad_ckpt": True, "human_model_path": "./pretrained_models/human_model_files",
                "smplx_subdivide_num": 1, "smplx_type": "smplx_2", "gs_query_dim": 1024, "gs_use_rgb": True, "gs_sh": 3,
                "dense_sample_pts": 40000,
                "gs_mlp_network_config": {"n_neurons": 512, "n_hidden_layers": 2, "activation": "silu"},
                "gs_xyz_offset_max_step": 1.0, "gs_clip_scaling": [100, 0.01, 0.05, 3000], "expr_param_dim": 100,
                "shape_param_dim": 10, "fix_opacity": False, "fix_rotation": False, "cano_pose_type": 1}
    cfg = config_from_json(official, "3DAIGC/LHM-1B-HF")
    assert cfg == get_config("LHM-1B-HF") and cfg.scale_clip == 0.05 and cfg.fine_encoder_tokens == 4096
    # -HF shares the yaml (sizes) of its base model; MINI has its own sizes
    assert (cfg.source_size, cfg.render_size) == (1024, 512)
    mini = config_from_json({**official, "transformer_layers": 2, "dense_sample_pts": 20000}, "LHM-MINI")
    assert (mini.source_size, mini.render_size, mini.src_head_size) == (512, 384, 112)
    # an unnamed folder: the sizes follow the layer count
    assert config_from_json({**official, "transformer_layers": 5}).name == "LHM-500M"
    with pytest.raises(ValueError, match="transformer_type"):
        config_from_json({**official, "transformer_type": "cogvideo_cond"})
    with pytest.raises(ValueError, match="encoder_model_name"):
        config_from_json({**official, "encoder_model_name": "dinov2_vitg14_reg"})


def test_our_config_json_round_trips():
    data = json.loads(json.dumps(TINY.to_json()))
    assert config_from_json(data, "3DAIGC/LHM-TINY") == TINY
    assert TINY.fine_encoder_tokens == (TINY.fine_encoder_resolution // 16) ** 2 != 4096


# ---------------------------------------------------------------------------------------------
# the network's image transforms (§2.3, §2.4, §9)

def test_pad_to_square_is_white_and_centred():
    img = torch.zeros(1, 3, 7, 4)
    out = pad_to_square(img)
    assert out.shape == (1, 3, 7, 7)
    assert (out[..., :, :1] == 1).all() and (out[..., :, 5:] == 1).all() and (out[..., :, 1:5] == 0).all()


def _reference_resize(img, size):
    """kornia 0.7.2 resize(bicubic, align_corners=True, antialias=True) written out: 2D Gaussian, reflect pad."""
    h, w = img.shape[-2:]
    sig = [max((h / size[0] - 1) / 2, 0.001), max((w / size[1] - 1) / 2, 0.001)]
    ks = [int(max(4 * s, 3)) for s in sig]
    ks = [k + 1 if k % 2 == 0 else k for k in ks]
    g = []
    for k, s in zip(ks, sig):
        x = torch.arange(k, dtype=torch.float32) - k // 2
        e = torch.exp(-x**2 / (2 * torch.tensor(s, dtype=torch.float32) ** 2))
        g.append(e / e.sum())
    kernel = torch.outer(g[0], g[1])
    padded = F.pad(img, (ks[1] // 2, ks[1] // 2, ks[0] // 2, ks[0] // 2), mode="reflect")
    C = img.shape[1]
    blurred = F.conv2d(padded, kernel.expand(C, 1, *kernel.shape), groups=C)
    return F.interpolate(blurred, size=size, mode="bicubic", align_corners=True)


def test_resize_matches_kornia_recipe():
    torch.manual_seed(0)
    img = torch.rand(1, 3, 1694, 1022)
    sq = pad_to_square(img)
    out = resize(sq, (1024, 1024))
    assert torch.allclose(out, _reference_resize(sq, (1024, 1024)), atol=1e-5)
    # sigma 0.327 -> a 3x3 kernel that really blurs: differs from a plain bicubic resize
    assert (out - F.interpolate(sq, size=(1024, 1024), mode="bicubic", align_corners=True)).abs().max() > 1e-3
    small = torch.rand(1, 3, 112, 112)
    assert torch.equal(resize(small, (448, 448)), F.interpolate(small, size=(448, 448), mode="bicubic", align_corners=True))
    assert resize(small, (112, 112)) is small


# ---------------------------------------------------------------------------------------------
# DINOv2 and the fusion head (§2.4)

def _tiny_dino(**kw):
    torch.manual_seed(0)
    return DinoVisionTransformer(DinoV2Config(embed_dim=32, depth=4, num_heads=2, out_layers=(1, 3), **kw))


def test_dinov2_pos_embed_interpolated_to_32x32_at_448():
    model = _tiny_dino()
    img = torch.rand(1, 3, 448, 448)
    tokens = model.prepare_tokens(img)
    assert tokens.shape == (1, 1 + 4 + 32 * 32, 32)
    grid = model.pos_embed[:, 1:].reshape(1, 37, 37, 32).permute(0, 3, 1, 2)
    pos = F.interpolate(grid, size=(32, 32), mode="bicubic", antialias=True).permute(0, 2, 3, 1).reshape(1, 1024, 32)
    patches = F.conv2d(img, model.patch_embed.proj.weight, model.patch_embed.proj.bias, stride=14).flatten(2).transpose(1, 2)
    torch.testing.assert_close(tokens[:, 5:], patches + pos, atol=1e-5, rtol=0)
    torch.testing.assert_close(tokens[:, :1], model.cls_token + model.pos_embed[:, :1])
    torch.testing.assert_close(tokens[:, 1:5], model.register_tokens)  # registers carry no position embedding


def test_dinov2_intermediate_layers_are_normed_patch_tokens():
    model = _tiny_dino()
    img = torch.rand(1, 3, 224, 224)
    x = model.prepare_tokens(img)
    want = []
    for i, blk in enumerate(model.blocks):
        a = blk.norm1(x)
        B, N, D = a.shape
        q, k, v = (a @ blk.attn.qkv.weight.T + blk.attn.qkv.bias).reshape(B, N, 3, 2, 16).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(16), dim=-1) @ v
        x = x + blk.ls1.gamma * blk.attn.proj(att.transpose(1, 2).reshape(B, N, D))
        h = blk.norm2(x)
        x = x + blk.ls2.gamma * blk.mlp.fc2(0.5 * blk.mlp.fc1(h) * (1 + torch.erf(blk.mlp.fc1(h) / math.sqrt(2))))
        if i in (1, 3):
            want.append(model.norm(x)[:, 5:])
    got = model.intermediate_layers(img)
    assert len(got) == 2
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, atol=1e-5, rtol=1e-5)


def test_fusion_head_is_the_conv_head():
    torch.manual_seed(0)
    head = FusionHead(8, 6, 5)
    feats = [torch.randn(2, 12, 8) for _ in range(4)]  # a 3x4 token grid
    grids = [f.transpose(1, 2).reshape(2, 8, 3, 4) for f in feats]
    cat = torch.cat([F.conv2d(g, c.weight, c.bias) for g, c in zip(grids, head.projects)], dim=1)
    want = F.conv2d(cat, head.output_conv.weight, head.output_conv.bias).flatten(2).transpose(1, 2)
    torch.testing.assert_close(head(feats), want, atol=1e-5, rtol=1e-5)


def test_point_embed():
    torch.manual_seed(0)
    emb = PointEmbed(16)
    p = torch.randn(1, 5, 3)
    freqs = math.pi * 2.0 ** torch.arange(8)
    proj = torch.cat([p[..., :1] * freqs, p[..., 1:2] * freqs, p[..., 2:] * freqs], dim=-1)
    feat = torch.cat([proj.sin(), proj.cos(), p], dim=-1) @ emb.mlp.weight.T + emb.mlp.bias
    normed = (feat - feat.mean(-1, keepdim=True)) / torch.sqrt(feat.var(-1, unbiased=False, keepdim=True) + 1e-5)
    want = normed * emb.norm.weight + emb.norm.bias
    torch.testing.assert_close(emb(p), want, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------------
# the transformer (§2.7), against a re-computation of the reference pseudo-code

def _lin(m, x):
    return x @ m.weight.T + m.bias


def _ln(x):
    return (x - x.mean(-1, keepdim=True)) / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + 1e-6)


def _rms(x, w):
    return x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * w


def _silu(x):
    return x * torch.sigmoid(x)


def _ff(ff, x):
    h = _lin(ff.net[0].proj, x)
    h = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h**3)))
    return _lin(ff.net[2], h)


def _ref_attention(attn, nx, nctx, heads):
    def split(t):
        B, N, D = t.shape
        return t.reshape(B, N, heads, D // heads).permute(0, 2, 1, 3)

    q = torch.cat([_rms(split(_lin(attn.to_q, nx)), attn.norm_q.weight),
                   _rms(split(_lin(attn.add_q_proj, nctx)), attn.norm_added_q.weight)], 2)
    k = torch.cat([_rms(split(_lin(attn.to_k, nx)), attn.norm_k.weight),
                   _rms(split(_lin(attn.add_k_proj, nctx)), attn.norm_added_k.weight)], 2)
    v = torch.cat([split(_lin(attn.to_v, nx)), split(_lin(attn.add_v_proj, nctx))], 2)
    o = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v
    B, H, L, d = o.shape
    o = o.permute(0, 2, 1, 3).reshape(B, L, H * d)
    n = nx.shape[1]
    return _lin(attn.to_out[0], o[:, :n]), (None if attn.to_add_out is None else _lin(attn.to_add_out, o[:, n:]))


def _ref_block(blk, x, ctx, temb, heads):
    D = x.shape[-1]
    e = _lin(blk.norm1.linear, _silu(temb))
    shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = (e[:, None, i * D:(i + 1) * D] for i in range(6))
    nx = _ln(x) * (1 + scale_msa) + shift_msa
    c = _lin(blk.norm1_context.linear, _silu(temb))
    if blk.context_pre_only:
        c_scale, c_shift = c[:, None, :D], c[:, None, D:]  # scale first
        nctx = _ln(ctx) * (1 + c_scale) + c_shift
    else:
        chunks = (c[:, None, i * D:(i + 1) * D] for i in range(6))
        c_shift_msa, c_scale_msa, c_gate_msa, c_shift_mlp, c_scale_mlp, c_gate_mlp = chunks
        nctx = _ln(ctx) * (1 + c_scale_msa) + c_shift_msa
    a, actx = _ref_attention(blk.attn, nx, nctx, heads)
    x = x + gate_msa * a
    x = x + gate_mlp * _ff(blk.ff, _ln(x) * (1 + scale_mlp) + shift_mlp)
    if blk.context_pre_only:
        return x, None
    ctx = ctx + c_gate_msa * actx
    f = _ff(blk.ff_context, _ln(ctx) * (1 + c_scale_mlp) + c_shift_mlp)
    ctx = ctx + c_gate_mlp * f
    ctx = ctx + f  # the double add
    return x, ctx


def _randomize(module):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * (0.5 if p.dim() == 1 else 1 / math.sqrt(p.shape[-1])))
    return module


@pytest.mark.parametrize("context_pre_only", [False, True])
def test_joint_block_matches_reference(context_pre_only):
    D, heads = 32, 4
    blk = _randomize(JointBlock(D, heads, context_pre_only))
    x, ctx, temb = torch.randn(2, 9, D), torch.randn(2, 5, D), torch.randn(2, D)
    got_x, got_c = blk(x, ctx, temb)
    want_x, want_c = _ref_block(blk, x, ctx, temb, heads)
    torch.testing.assert_close(got_x, want_x, atol=1e-4, rtol=1e-4)
    if context_pre_only:
        assert got_c is None
    else:
        torch.testing.assert_close(got_c, want_c, atol=1e-4, rtol=1e-4)


def test_context_ff_output_is_added_twice():
    """Shifting the context FF output by 1 moves the context by c_gate_mlp + 1: gated add plus un-gated add (§7.9)."""
    D, heads = 32, 4
    blk = _randomize(JointBlock(D, heads, False))
    x, ctx, temb = torch.randn(1, 6, D), torch.randn(1, 4, D), torch.randn(1, D)
    _, c = blk(x, ctx, temb)
    with torch.no_grad():
        blk.ff_context.net[2].bias.add_(1.0)
    _, c_shifted = blk(x, ctx, temb)
    gate = _lin(blk.norm1_context.linear, _silu(temb))[:, 5 * D:]
    torch.testing.assert_close(c_shifted - c, (gate + 1).expand_as(c), atol=1e-4, rtol=1e-4)


def test_body_head_split_and_temb_halves():
    D, heads = 32, 4
    layer = _randomize(BodyHeadBlock(D, heads, False))
    N, T_body = 10, 6  # int(0.75 * 10) = 7 body queries; the context splits after the body tokens
    x, ctx, temb = torch.randn(1, N, D), torch.randn(1, T_body + 3, D), torch.randn(1, 2 * D)
    xh, ch = _ref_block(layer.head_dit, x[:, 7:], ctx[:, 6:], temb[:, D:], heads)
    want_x, cb = _ref_block(layer.body_dit, torch.cat([x[:, :7], xh], 1), ctx[:, :6], temb[:, :D], heads)
    got_x, got_c = layer(x, ctx, temb, num_body_ctx=T_body)
    torch.testing.assert_close(got_x, want_x, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(got_c, torch.cat([cb, ch], 1), atol=1e-4, rtol=1e-4)


def test_network_conditioning():
    """Body tokens first, head tokens zero-padded, temb from mean-pooled raw Sapiens tokens (§2.5)."""
    net = _randomize(build_model("LHM-TINY"))
    net.pcl_embed.reset_basis()
    body = torch.randn(1, TINY.fine_encoder_tokens, TINY.fine_encoder_feat_dim)
    head = torch.randn(1, 20, TINY.encoder_feat_dim)
    q = torch.randn(1, 12, 3) * 0.5
    cond = torch.cat([body, F.pad(head, (0, TINY.fine_encoder_feat_dim - TINY.encoder_feat_dim))], 1)
    m = net.motion_embed_mlp
    temb = _lin(m[2], _silu(_lin(m[0], body.mean(1))))
    x, ctx = net.pcl_embed(q), _lin(net.transformer.linear_cond_proj, cond)
    for layer in net.transformer.layers:
        xh, ch = _ref_block(layer.head_dit, x[:, 9:], ctx[:, TINY.fine_encoder_tokens:], temb[:, 64:], 4)
        x, cb = _ref_block(layer.body_dit, torch.cat([x[:, :9], xh], 1), ctx[:, :TINY.fine_encoder_tokens], temb[:, :64], 4)
        ctx = None if cb is None else torch.cat([cb, ch], 1)
    want = net.transformer.norm(x)
    torch.testing.assert_close(net.forward_latent(body, head, q), want, atol=1e-3, rtol=1e-3)
    with pytest.raises(ValueError, match=f"splits its context after {TINY.fine_encoder_tokens}"):
        net.forward_latent(body[:, :-1], head, q)


def test_gaussian_head_activations_and_clamps():
    torch.manual_seed(0)
    net = build_model("LHM-TINY")
    prior = net.renderer.smplx_model
    upper = torch.zeros(TINY.dense_sample_pts, dtype=torch.bool)
    upper[::2] = True
    prior.is_upper_body = upper
    with torch.no_grad():
        net.renderer.gs_net.out_layers.scaling.bias.fill_(5.0)  # exp(5) >> every clip
    attrs = net.renderer(torch.randn(1, TINY.dense_sample_pts, TINY.transformer_dim))
    assert torch.allclose(attrs.scale[0, ~upper], torch.tensor(0.05))
    assert torch.allclose(attrs.scale[0, upper], torch.tensor(0.02))
    assert attrs.offset.abs().max() < 0.5 and 0 < attrs.rgb.min() and attrs.rgb.max() < 1
    assert torch.allclose(attrs.rotation.norm(dim=-1), torch.ones(1))
    assert attrs.opacity.shape == (1, TINY.dense_sample_pts)


# ---------------------------------------------------------------------------------------------
# Sapiens from a TorchScript file (§2.3)

def _save_sapiens_torchscript(path, dim=TINY.fine_encoder_feat_dim):
    """Script a random stand-in to ``path``; returns the eager module it was made from."""
    torch.manual_seed(1)
    module = RandomSapiens(dim)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # TorchScript is what Sapiens ships as
        torch.jit.script(module).save(str(path))
    return module


def test_sapiens_torchscript_round_trip(tmp_path, monkeypatch):
    eager = _save_sapiens_torchscript(tmp_path / "sapiens.pt2")
    enc = load_sapiens(tmp_path / "sapiens.pt2", "cpu", resolution=256)
    assert isinstance(enc.backbone, torch.jit.ScriptModule)
    img = torch.rand(1, 3, 300, 180)
    tokens = enc(img)
    assert tokens.shape == (1, 256, TINY.fine_encoder_feat_dim) and tokens.dtype == torch.float32
    x = (resize(pad_to_square(img, 1.0), (256, 256)) - torch.tensor([0.4844, 0.4570, 0.4062]).view(1, 3, 1, 1)) \
        / torch.tensor([0.2295, 0.2236, 0.2256]).view(1, 3, 1, 1)
    torch.testing.assert_close(tokens, eager(x)[0].flatten(2).transpose(1, 2))
    monkeypatch.setenv("LHM_SAPIENS_PATH", str(tmp_path / "sapiens.pt2"))
    assert load_sapiens(resolution=256)(img).shape == tokens.shape


def test_missing_sapiens_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.delenv("LHM_SAPIENS_PATH", raising=False)
    monkeypatch.setenv("LHM_MODELS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PriorFileError, match="LHM_MODELS_DIR") as e:
        load_sapiens()
    assert "sapiens_1b_epoch_173_torchscript.pt2" in str(e.value)


# ---------------------------------------------------------------------------------------------
# checkpoints through from_pretrained, and the engine end to end

@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory, smplx_dir):
    """A random tiny official-layout checkpoint in a fake HF cache, plus the prior files it needs."""
    from plyfile import PlyData, PlyElement

    root = tmp_path_factory.mktemp("release")
    body = lhm.load_body("smplx", smplx_dir)
    samples = sample_surface(body, TINY.dense_sample_pts)
    torch.manual_seed(0)
    net = build_model("LHM-TINY")
    buffers = prior_buffers(body, samples, constrain=torch.arange(body.vertices.shape[0]) % 3 == 0)
    net.renderer.smplx_model.fill(buffers, only_missing=False)
    snapshot = root / "hub" / "models--3DAIGC--LHM-TINY" / "snapshots" / ("0123abcd" * 5)
    save_pretrained(net, TINY, snapshot)
    (root / "hub" / "models--3DAIGC--LHM-TINY" / "refs").mkdir()
    (root / "hub" / "models--3DAIGC--LHM-TINY" / "refs" / "main").write_text("0123abcd" * 5)
    models = root / "models" / "pretrained_models"
    _save_sapiens_torchscript(models / SAPIENS_FILE)
    pts = samples.points.numpy()
    (models / "dense_sample_points").mkdir()
    el = PlyElement.describe(np.array([tuple(p) for p in pts], dtype=[("x", "f4"), ("y", "f4"), ("z", "f4")]), "vertex")
    PlyData([el]).write(str(models / "dense_sample_points" / f"1_{TINY.dense_sample_pts}.ply"))
    return {"root": root, "net": net, "snapshot": snapshot, "body": body, "samples": samples, "smplx_dir": smplx_dir}


@pytest.fixture
def offline_hub(tiny_release, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tiny_release["root"] / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_CACHE", str(tiny_release["root"] / "hub"))
    monkeypatch.setenv("LHM_MODELS_DIR", str(tiny_release["root"] / "models"))
    monkeypatch.delenv("LHM_SAPIENS_PATH", raising=False)
    return tiny_release


def _inputs():
    gen = torch.Generator().manual_seed(3)
    image, head = torch.rand(1, 3, 420, 252, generator=gen), torch.rand(1, 3, 112, 112, generator=gen)
    return image, head, torch.randn(10, generator=gen) * 0.5


def test_from_pretrained_end_to_end(offline_hub):
    from lhm.engines.lhm_engine import LHMEngine

    engine = LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=offline_hub["smplx_dir"], strict=True)
    report = engine.load_report
    assert report.missing == [] and report.unexpected == [] and report.skipped == []
    assert engine.network.state_dict().keys() == offline_hub["net"].state_dict().keys()
    for k, v in offline_hub["net"].state_dict().items():
        assert torch.equal(engine.network.state_dict()[k], v), k

    image, head, betas = _inputs()
    avatar = engine.reconstruct(image, head, betas)
    again = engine.reconstruct(image, head, betas)
    assert isinstance(avatar, lhm.Avatar) and len(avatar) == TINY.dense_sample_pts
    for field in ("means", "quats", "scales", "opacities", "colors"):
        assert torch.equal(getattr(avatar.gaussians, field), getattr(again.gaussians, field)), field

    # the same as the in-memory network that was saved, with the same Sapiens weights
    sapiens = load_sapiens(offline_hub["root"] / "models" / "pretrained_models" / SAPIENS_FILE, resolution=256)
    direct = LHMEngine(offline_hub["net"], sapiens, offline_hub["body"], offline_hub["samples"], device="cpu")
    torch.testing.assert_close(direct.reconstruct(image, head, betas).gaussians.means, avatar.gaussians.means)

    g = avatar.gaussians
    offsets = g.means - engine.space.points
    assert offsets.abs().max() < 0.5 and g.scales.max() <= 0.05 + 1e-7
    assert torch.equal(avatar.rigid_mask, offline_hub["net"].renderer.smplx_model.is_constrain_body)
    assert torch.equal(avatar.betas, betas)

    motion = lhm.Motion.from_full_pose(torch.randn(2, 55, 3) * 0.2, torch.tensor([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0]]))
    posed = avatar.pose(motion)
    assert posed.means.shape == (2, TINY.dense_sample_pts, 3) and torch.isfinite(posed.means).all()
    camera = lhm.Camera.look_at((0.0, 0.0, 3.0), (0.0, -0.3, 0.0), 64, 64, fov_y_deg=45.0)
    frames = render(posed, camera, background=1.0)
    assert frames.rgb.shape == (2, 64, 64, 3) and torch.isfinite(frames.rgb).all()
    assert (frames.alpha > 0.5).sum() > 20


def test_checkpoint_with_a_wrong_shape(offline_hub, tmp_path):
    from safetensors.torch import load_file, save_file

    from lhm.engines.lhm_engine import LHMEngine

    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text((offline_hub["snapshot"] / "config.json").read_text())
    state = load_file(str(offline_hub["snapshot"] / "model.safetensors"))
    state["transformer.linear_cond_proj.weight"] = torch.zeros(64, 40)
    save_file(state, str(bad / "model.safetensors"))
    with pytest.raises(CheckpointError) as e:
        LHMEngine.from_pretrained(bad, device="cpu", smplx_dir=offline_hub["smplx_dir"])
    assert "transformer.linear_cond_proj.weight: checkpoint [64, 40] vs network [64, 48]" in str(e.value)


def test_checkpoint_buffers_override_and_unused_keys_are_skipped(offline_hub, tmp_path):
    from safetensors.torch import load_file, save_file

    from lhm.engines.lhm_engine import LHMEngine

    folder = tmp_path / "LHM-TINY"
    folder.mkdir()
    (folder / "config.json").write_text((offline_hub["snapshot"] / "config.json").read_text())
    state = load_file(str(offline_hub["snapshot"] / "model.safetensors"))
    del state["renderer.smplx_model.is_upper_body"]  # computed from SMPL-X instead
    state["renderer.smplx_model.is_upper_body_unknown"] = torch.zeros(3)
    state["renderer.smplx_model.voxel_ws"] = torch.zeros(55, 4, 4, 4)  # never read
    state["renderer.smplx_model.skinning_weight"] = torch.roll(state["renderer.smplx_model.skinning_weight"], 1, dims=1)
    save_file(state, str(folder / "model.safetensors"))
    engine = LHMEngine.from_pretrained(folder, device="cpu", smplx_dir=offline_hub["smplx_dir"])
    report = engine.load_report
    assert report.missing == ["renderer.smplx_model.is_upper_body"]
    assert report.skipped == ["renderer.smplx_model.voxel_ws"]
    assert report.unexpected == ["renderer.smplx_model.is_upper_body_unknown"]
    prior = engine.network.renderer.smplx_model
    assert torch.equal(prior.skinning_weight, state["renderer.smplx_model.skinning_weight"])
    assert torch.equal(engine.space.weights, state["renderer.smplx_model.skinning_weight"])
    assert torch.equal(prior.is_upper_body, offline_hub["net"].renderer.smplx_model.is_upper_body)
    with pytest.raises(CheckpointError, match="strict"):
        LHMEngine.from_pretrained(folder, device="cpu", smplx_dir=offline_hub["smplx_dir"], strict=True)
    del state["renderer.gs_net.out_layers.xyz.bias"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="renderer.gs_net.out_layers.xyz.bias"):
        LHMEngine.from_pretrained(folder, device="cpu", smplx_dir=offline_hub["smplx_dir"])


def test_missing_checkpoint_and_files(offline_hub, tmp_path, monkeypatch):
    from lhm.engines.lhm_engine import LHMEngine

    # an official name: its prior files are checked before the checkpoint would be downloaded
    with pytest.raises(PriorFileError, match="1_40000.ply"):
        LHMEngine.from_pretrained("LHM-500M", device="cpu", smplx_dir=offline_hub["smplx_dir"])
    with pytest.raises(CheckpointNotFoundError, match="someone/avatar-model") as e:
        LHMEngine.from_pretrained("someone/avatar-model", device="cpu", smplx_dir=offline_hub["smplx_dir"])
    assert "huggingface-cli download" in str(e.value)
    with pytest.raises(CheckpointNotFoundError, match="holds no config.json"):
        LHMEngine.from_pretrained(tmp_path, device="cpu", smplx_dir=offline_hub["smplx_dir"])
    monkeypatch.setenv("LHM_MODELS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(PriorFileError, match="Sapiens"):
        LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=offline_hub["smplx_dir"])
    sapiens = offline_hub["root"] / "models" / "pretrained_models" / SAPIENS_FILE
    with pytest.raises(PriorFileError, match="dense_sample_points/1_400.ply"):
        LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=offline_hub["smplx_dir"], sapiens_path=sapiens)
    with pytest.raises(lhm.body.SMPLXFilesError):
        LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=tmp_path, sapiens_path=sapiens)


def test_local_folders_and_modelscope_layout(offline_hub, tmp_path, monkeypatch):
    import shutil

    from lhm.models import resolve_checkpoint

    root = tmp_path / "pretrained_models" / "Damo_XR_Lab" / "LHM-TINY"
    for step in ("step_000100", "step_060000", "step_9"):
        shutil.copytree(offline_hub["snapshot"], root / step)
    monkeypatch.setenv("LHM_MODELS_DIR", str(tmp_path))
    assert resolve_checkpoint("LHM-TINY") == root / "step_060000"  # the highest step wins, as officially
    assert resolve_checkpoint(root / "step_000100" / "model.safetensors") == root / "step_000100"
    monkeypatch.delenv("LHM_MODELS_DIR")
    assert resolve_checkpoint("3DAIGC/LHM-TINY") == offline_hub["snapshot"]  # the fake hub cache


def test_bfloat16_weights(offline_hub):
    from lhm.engines.lhm_engine import LHMEngine

    engine = LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", dtype=torch.bfloat16, smplx_dir=offline_hub["smplx_dir"],
                                       head_sr=lambda h: F.interpolate(h, size=(224, 224), mode="bicubic"))
    assert engine.dtype == torch.bfloat16 and engine.network.renderer.smplx_model.skinning_weight.dtype == torch.float32
    avatar = engine.reconstruct(*_inputs())
    assert avatar.gaussians.means.dtype == torch.float32 and torch.isfinite(avatar.gaussians.means).all()


def test_head_super_resolution_is_pluggable(offline_hub, caplog):
    from lhm.engines.lhm_engine import LHMEngine

    calls = []

    def sr(head):
        calls.append(tuple(head.shape))
        return F.interpolate(head, size=(448, 448), mode="nearest")

    engine = LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=offline_hub["smplx_dir"], head_sr=sr)
    image, head, betas = _inputs()
    engine.reconstruct(image, head, betas)
    assert calls == [(1, 3, 112, 112)]
    assert "bicubic" not in caplog.text
    with caplog.at_level("WARNING"):
        LHMEngine.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=offline_hub["smplx_dir"])
    assert "Face super-resolution weights" in caplog.text


def test_random_sapiens_stand_in_matches_the_contract():
    enc = SapiensEncoder(RandomSapiens(24), resolution=64)
    assert enc(torch.rand(1, 3, 100, 60)).shape == (1, 16, 24)


def test_models_dir_variable_holds_several_folders(tmp_path, monkeypatch):
    from lhm.models.weights import model_roots

    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("LHM_MODELS_DIR", f"{a}{os.pathsep}{b}")
    assert model_roots()[:2] == [a, b]


def test_pipeline_runs_a_checkpoint_from_a_photo(offline_hub):
    """The LHM engine behind the Pipeline: photo -> prepare on its SMPL-X body -> official crops -> network -> video."""
    from pathlib import Path

    pipe = lhm.Pipeline.from_pretrained("3DAIGC/LHM-TINY", device="cpu", smplx_dir=offline_hub["smplx_dir"])
    photo = Path(__file__).resolve().parents[1] / "examples" / "dev_cutout.png"
    avatar = pipe.reconstruct(photo, remove_background=False)
    person = avatar.info["person"]
    assert avatar.info["engine"] == "lhm" and len(avatar) == len(pipe.engine.space)
    assert person.fit.betas.shape == (pipe.engine.config.shape_param_dim,)
    torch.testing.assert_close(avatar.betas, person.fit.betas.float())
    clip = pipe.animate(avatar, "idle", size=48, duration=0.1)
    assert clip.rgb.shape[1:] == (48, 48, 3) and torch.isfinite(avatar.gaussians.means).all()
