"""Shared fixtures: offline hub, a synthetic SMPL-X folder, the free body."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))

import synthetic_smplx  # noqa: E402

import lhm  # noqa: E402


@pytest.fixture(scope="session")
def smplx_dir(tmp_path_factory) -> Path:
    """A folder laid out like LHM's human_model_files, holding a synthetic SMPLX_NEUTRAL.npz."""
    root = tmp_path_factory.mktemp("human_model_files")
    synthetic_smplx.write_smplx_folder(root)
    return root


@pytest.fixture(scope="session")
def smplx_body(smplx_dir) -> lhm.Body:
    """The synthetic SMPL-X body loaded through the smplx package."""
    return lhm.load_body("smplx", smplx_dir)


@pytest.fixture(scope="session")
def free_body() -> lhm.Body:
    """The embedded free body."""
    return lhm.load_body("free")
