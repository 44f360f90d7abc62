"""Configs of the LHM network, as data: the official sizes, a tiny test size, ``config.json`` parsing.

The architecture of a released checkpoint comes from the ``config.json`` next to its weights (the
yaml ``model:`` block written by the official ``scripts/convert_hf.py``, reference §1.1); the input
and render sizes come from the inference yaml picked by the model name, where ``-HF`` variants share
their base model's yaml (§1.1-1.2). A few facts the official json cannot carry (the DINOv2 geometry,
the encoders' working resolutions, the Sapiens token count) are extra keys here with the official
values as defaults; our own ``config.json`` files write them so that any size round-trips.
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# renderer.hyper_step(1e7) is called before decoding, so the scale clip is the schedule's end (§2.8)
INFERENCE_STEP = 10_000_000


@dataclass(frozen=True)
class DinoV2Config:
    """Geometry of the DINOv2 head encoder (ViT with register tokens)."""

    embed_dim: int = 1024
    depth: int = 24
    num_heads: int = 16
    patch_size: int = 14
    num_register_tokens: int = 4
    img_size: int = 518  # the pos-embed grid (37x37) is interpolated to the input (§2.4)
    mlp_ratio: float = 4.0
    out_layers: tuple[int, ...] = (4, 11, 17, 23)  # blocks fed to the fusion head

    @property
    def pos_grid(self) -> int:
        """Side of the stored position-embedding grid."""
        return self.img_size // self.patch_size


# encoder_model_name -> backbone; the code (not the model card) uses ViT-L/14-reg4 for every size (§1.2)
DINOV2_ARCHS: dict[str, DinoV2Config] = {"dinov2_vitl14_reg": DinoV2Config()}


@dataclass(frozen=True)
class LHMConfig:
    """Everything that shapes the LHM network and its inputs.

    Field names follow the official yaml/json ``model:`` block where one exists; the rest are ours.
    """

    name: str
    # -- official config.json keys
    encoder_model_name: str = "dinov2_vitl14_reg"
    encoder_feat_dim: int = 1024
    fine_encoder_feat_dim: int = 1536
    transformer_dim: int = 1024
    transformer_heads: int = 16
    transformer_layers: int = 5
    pcl_dim: int = 1024
    gs_query_dim: int = 1024
    gs_mlp_network_config: dict = field(default_factory=lambda: {"n_neurons": 512, "n_hidden_layers": 2, "activation": "silu"})
    gs_xyz_offset_max_step: float = 1.0
    gs_clip_scaling: float | tuple[float, float, float, float] = (100, 0.01, 0.05, 3000)
    dense_sample_pts: int = 40000
    shape_param_dim: int = 10
    expr_param_dim: int = 100
    # -- ours (official values; written to our config.json so tiny sizes round-trip)
    dinov2: DinoV2Config = field(default_factory=DinoV2Config)
    encoder_resolution: int = 448  # Dinov2FusionWrapper default
    fine_encoder_resolution: int = 1024  # SapiensWrapper default
    # where the context splits into Sapiens (body) and DINOv2 (head) tokens; hard-coded 4096 in the
    # official transformer (§7.5), i.e. (1024/16)^2 Sapiens tokens
    fine_encoder_tokens: int = 4096
    # -- per-size inference yaml (dataset.*)
    source_size: int = 1024
    render_size: int = 512
    src_head_size: int = 112

    def __post_init__(self) -> None:
        for key in ("pcl_dim", "gs_query_dim"):
            if getattr(self, key) != self.transformer_dim:
                raise ValueError(f"{self.name}: {key}={getattr(self, key)} must equal transformer_dim={self.transformer_dim}")
        if self.transformer_dim % self.transformer_heads:
            raise ValueError(f"{self.name}: transformer_dim {self.transformer_dim} is not divisible "
                             f"by {self.transformer_heads} heads")
        if self.fine_encoder_feat_dim < self.encoder_feat_dim:
            raise ValueError(f"{self.name}: head features ({self.encoder_feat_dim}) are zero-padded to the body "
                             f"width ({self.fine_encoder_feat_dim}), which must not be smaller")
        if self.gs_mlp_network_config.get("activation", "silu") != "silu":
            raise ValueError(f"{self.name}: only the silu Gaussian MLP is supported")
        if self.transformer_layers < 1 or self.dense_sample_pts < 4:
            raise ValueError(f"{self.name}: needs at least one transformer layer and 4 query points")

    @property
    def scale_clip(self) -> float:
        """Upper clamp of Gaussian scales at inference: the LinerParameterTuner value at hyper_step(1e7)."""
        spec = self.gs_clip_scaling
        if isinstance(spec, (int, float)):
            return float(spec)
        start_step, start_value, end_value, end_step = spec
        t = min(max((INFERENCE_STEP - start_step) / (end_step - start_step), 0.0), 1.0)
        return float(start_value + t * (end_value - start_value))

    def to_json(self) -> dict:
        """The ``config.json`` content: the official keys plus ours."""
        out = dataclasses.asdict(self)
        out.pop("name")
        out["dinov2"]["out_layers"] = list(self.dinov2.out_layers)
        out["gs_clip_scaling"] = list(self.gs_clip_scaling) if isinstance(self.gs_clip_scaling, tuple) else self.gs_clip_scaling
        return out

    def replace(self, **changes) -> "LHMConfig":
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)


# the per-size differences (§1.2): layers, query points, and the yaml's source/render sizes
_SIZES = {
    "MINI": dict(transformer_layers=2, dense_sample_pts=20000, source_size=512, render_size=384),
    "500M": dict(transformer_layers=5, dense_sample_pts=40000, source_size=1024, render_size=512),
    "1B": dict(transformer_layers=15, dense_sample_pts=40000, source_size=1024, render_size=512),
}
OFFICIAL_NAMES = ("LHM-MINI", "LHM-500M", "LHM-500M-HF", "LHM-1B", "LHM-1B-HF")
HUB_OWNER = "3DAIGC"

CONFIGS: dict[str, LHMConfig] = {name: LHMConfig(name=name, **_SIZES[name.split("-")[1]]) for name in OFFICIAL_NAMES}
# every dimension small, every structural feature kept (two layers: one full, one context-pre-only)
CONFIGS["LHM-TINY"] = LHMConfig(
    name="LHM-TINY", encoder_model_name="dinov2_tiny_reg", encoder_feat_dim=32, fine_encoder_feat_dim=48,
    transformer_dim=64, transformer_heads=4, transformer_layers=2, pcl_dim=64, gs_query_dim=64,
    gs_mlp_network_config={"n_neurons": 32, "n_hidden_layers": 2, "activation": "silu"}, dense_sample_pts=400,
    dinov2=DinoV2Config(embed_dim=32, depth=4, num_heads=2, out_layers=(0, 1, 2, 3)),
    encoder_resolution=224, fine_encoder_resolution=256, fine_encoder_tokens=256, source_size=256, render_size=128,
)

# official json keys whose other values select code paths this implementation does not have
_REQUIRED = {
    "transformer_type": "sd3_mm_bh_cond", "fine_encoder_type": "sapiens", "encoder_type": "dinov2_fusion",
    "smplx_type": "smplx_2", "cano_pose_type": 1, "gs_use_rgb": True, "fix_opacity": False, "fix_rotation": False,
}


def canonical_name(name: str | os.PathLike) -> str | None:
    """The size a model name, repo id or path refers to (``LHM-500M-HF``, ``.../human-lrm-1B/...``), else None."""
    # the last mention wins, so a folder such as ".../LHM-500M/exps/human-lrm-1B" resolves to the deepest one
    matches = re.findall(r"(?:LHM|HUMAN-LRM)-(MINI|500M|1B|TINY)(-HF)?(?![A-Z0-9])", str(name).upper())
    if not matches:
        return None
    size, hf = matches[-1]
    return f"LHM-{size}{hf}"


def get_config(name: str) -> LHMConfig:
    """The config of an official size (``"LHM-500M"``, ``"3DAIGC/LHM-1B-HF"``) or ``"LHM-TINY"``."""
    key = canonical_name(name)
    if key is None:
        raise ValueError(f"unknown LHM model '{name}'; known: {', '.join(CONFIGS)}")
    return CONFIGS[key]


def config_from_json(data: dict, name: str | None = None) -> LHMConfig:
    """Build the config from a checkpoint's ``config.json`` content.

    Architecture keys come from ``data``; sizes the json does not hold come from the official size
    that ``name`` (model name, repo id or folder) or, failing that, the layer count points to.
    Raises ValueError for values that select architectures this implementation does not build.
    """
    for key, want in _REQUIRED.items():
        if key in data and data[key] != want:
            raise ValueError(f"config.json: {key}={data[key]!r} is not supported (LHM releases use {want!r})")
    if "latent_query_points_type" in data and not str(data["latent_query_points_type"]).startswith("e2e_smplx"):
        raise ValueError(f"config.json: latent_query_points_type={data['latent_query_points_type']!r} is not supported")
    base_name = canonical_name(name) if name else None
    if base_name is None:
        by_layers = {c.transformer_layers: n for n, c in CONFIGS.items() if n in ("LHM-MINI", "LHM-500M", "LHM-1B")}
        base_name = by_layers.get(data.get("transformer_layers"), "LHM-500M")
    base = CONFIGS[base_name]
    known = {f.name for f in dataclasses.fields(LHMConfig)} - {"name"}
    changes = {k: v for k, v in data.items() if k in known}
    if "dinov2" in changes:
        arch = dict(changes["dinov2"])
        arch["out_layers"] = tuple(arch.get("out_layers", DinoV2Config.out_layers))
        changes["dinov2"] = DinoV2Config(**arch)
    elif "encoder_model_name" in changes:
        if changes["encoder_model_name"] not in DINOV2_ARCHS:
            raise ValueError(f"config.json: encoder_model_name={changes['encoder_model_name']!r} is not supported "
                             f"(known: {', '.join(DINOV2_ARCHS)})")
        changes["dinov2"] = DINOV2_ARCHS[changes["encoder_model_name"]]
    if isinstance(changes.get("gs_clip_scaling"), list):
        changes["gs_clip_scaling"] = tuple(changes["gs_clip_scaling"])
    if "gs_mlp_network_config" in changes:
        changes["gs_mlp_network_config"] = dict(changes["gs_mlp_network_config"])
    return base.replace(name=base_name, **changes)


def load_config(path: str | os.PathLike, name: str | None = None) -> LHMConfig:
    """Read ``config.json`` (a file or the folder holding it)."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    return config_from_json(data, name)
