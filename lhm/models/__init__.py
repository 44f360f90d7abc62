"""The LHM network: configs, encoders, body-head transformer, Gaussian decoder and checkpoint loading.

Models are kept apart from the engine that runs them on photos (``lhm.engines.lhm_engine``).
"""
from .configs import CONFIGS, OFFICIAL_NAMES, DinoV2Config, LHMConfig, config_from_json, get_config, load_config
from .gs_head import GaussianAttributes
from .lhm import LHMNetwork, build_model
from .sapiens import RandomSapiens, SapiensEncoder, load_sapiens
from .weights import (CheckpointError, CheckpointNotFoundError, LoadReport, PriorFileError, load_weights,
                      resolve_checkpoint, save_pretrained)

__all__ = [
    "CONFIGS", "OFFICIAL_NAMES", "CheckpointError", "CheckpointNotFoundError", "DinoV2Config", "GaussianAttributes",
    "LHMConfig", "LHMNetwork", "LoadReport", "PriorFileError", "RandomSapiens", "SapiensEncoder", "build_model",
    "config_from_json", "get_config", "load_config", "load_sapiens", "load_weights", "resolve_checkpoint",
    "save_pretrained",
]
