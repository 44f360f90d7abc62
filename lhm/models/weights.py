"""Finding and loading weights: LHM checkpoints, the official prior files, the load report.

Checkpoints (``config.json`` + ``model.safetensors``, reference §1.3) come from a local folder, from a
models folder named by ``$LHM_MODELS_DIR`` (or ``./pretrained_models`` as in the official repo), or
from the Hugging Face hub through ``huggingface_hub`` (its cache and ``HF_HUB_OFFLINE`` respected).
Prior files (Sapiens TorchScript, dense points, SMPL-X, ...) are looked up in the same models folders
with the official relative paths (§1.4). Loading is memory-lean: the network is built on the meta
device and each tensor the network needs is read once from the file and assigned, never copied into
a randomly initialised twin; tensors the network does not need (such as the 778 MB ``voxel_ws``) are
never read.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from ..errors import InputError
from .configs import HUB_OWNER, LHMConfig

MODELS_ENV = "LHM_MODELS_DIR"
PRIOR_URL = "https://virutalbuy-public.oss-cn-hangzhou.aliyuncs.com/share/aigc3d/data/LHM/LHM_prior_model.tar"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
MODELSCOPE_OWNER = "Damo_XR_Lab"


class PriorFileError(InputError, FileNotFoundError):
    """A required model or prior file is missing; the message says what it is and where to put it."""


class CheckpointNotFoundError(InputError, FileNotFoundError):
    """No LHM checkpoint (config.json + model.safetensors) could be found for a name or path."""


class CheckpointError(InputError):
    """A checkpoint does not fit the network (wrong shapes, missing parameters, unexpected keys)."""


def model_roots() -> list[Path]:
    """Folders searched for model files: those of $LHM_MODELS_DIR (os.pathsep-separated), then the working directory."""
    roots = [Path(p).expanduser() for p in os.environ.get(MODELS_ENV, "").split(os.pathsep) if p]
    roots.append(Path.cwd())
    return roots


def _candidates(rel: str) -> list[Path]:
    # a models folder may be the official repo root (holding pretrained_models/) or pretrained_models itself
    return [p for root in model_roots() for p in (root / "pretrained_models" / rel, root / rel)]


def find_prior_file(rel: str, what: str, hint: str = "") -> Path:
    """The first existing ``pretrained_models/<rel>`` in the models folders, else a PriorFileError."""
    tried = _candidates(rel)
    for path in tried:
        if path.is_file():
            return path
    raise PriorFileError(
        f"{what} not found (pretrained_models/{rel}). Looked in: {', '.join(map(str, tried))}. "
        f"It ships with the LHM prior files ({PRIOR_URL}); unpack them and set {MODELS_ENV} to the folder "
        f"that holds pretrained_models/{'; ' + hint if hint else ''}.")


def find_prior_dir(rel: str) -> Path | None:
    """The first existing ``pretrained_models/<rel>`` folder in the models folders, else None."""
    return next((p for p in _candidates(rel) if p.is_dir()), None)


def _checkpoint_folder(path: Path) -> Path | None:
    """The folder holding config.json + model.safetensors at ``path`` (a file, the folder, or its newest step_*)."""
    if path.is_file():
        path = path.parent
    if (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file():
        return path
    # the official ModelScope layout keeps checkpoints in step_<n> sub-folders; the highest wins (§1.3)
    steps = sorted((p for p in path.glob("step_*") if p.is_dir() and re.fullmatch(r"step_\d+", p.name)),
                   key=lambda p: int(p.name[5:]))
    return _checkpoint_folder(steps[-1]) if steps else None


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """Find a checkpoint folder for a local path, a model name (``LHM-500M``) or a hub repo id.

    Order: the path itself; ``<models folder>/[pretrained_models/]<repo id, ModelScope id or name>``; the HF cache
    that the official code keeps in ``pretrained_models/huggingface``; the hub (download or cache).
    """
    path = Path(name_or_path).expanduser()
    if path.exists():
        folder = _checkpoint_folder(path)
        if folder is None:
            raise CheckpointNotFoundError(f"'{path}' holds no {CONFIG_FILE} + {WEIGHTS_FILE} (nor step_* folders with them).")
        return folder
    name = str(name_or_path)
    repo_id = name if "/" in name else f"{HUB_OWNER}/{name}"
    short = repo_id.split("/")[-1]
    for rel in dict.fromkeys((repo_id, f"{MODELSCOPE_OWNER}/{short}", short)):
        for candidate in _candidates(rel):
            if candidate.is_dir() and (folder := _checkpoint_folder(candidate)) is not None:
                return folder

    from huggingface_hub import snapshot_download

    patterns = [CONFIG_FILE, WEIGHTS_FILE]
    cache = find_prior_dir("huggingface")
    if cache is not None:
        try:
            folder = _checkpoint_folder(Path(snapshot_download(repo_id, cache_dir=cache, local_files_only=True,
                                                               allow_patterns=patterns)))
            if folder is not None:
                return folder
        except (OSError, ValueError):
            pass  # not in that cache: go on to the standard hub cache
    try:
        folder = Path(snapshot_download(repo_id, allow_patterns=patterns))
    except (OSError, ValueError) as e:  # offline without a cached copy, unknown repo, no connection, ...
        raise CheckpointNotFoundError(
            f"LHM checkpoint '{name}' is neither a local folder nor available from the Hugging Face hub "
            f"(repo '{repo_id}': {type(e).__name__}: {e}). Download it while online (huggingface-cli download "
            f"{repo_id}), or from ModelScope ({MODELSCOPE_OWNER}/{short}) into "
            f"$LHM_MODELS_DIR/pretrained_models/{repo_id}, or pass the folder that holds {CONFIG_FILE} and {WEIGHTS_FILE}."
        ) from e
    found = _checkpoint_folder(folder)
    if found is None:
        raise CheckpointNotFoundError(f"'{folder}' lacks {CONFIG_FILE} or {WEIGHTS_FILE}; the download may be incomplete.")
    return found


@dataclass
class LoadReport:
    """What a checkpoint load did. missing: network tensors the file lacks (computed instead);
    unexpected: file tensors the network does not know; skipped: known tensors inference does not need."""

    path: Path
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [f"{self.path}: {len(self.loaded)} tensors loaded"]
        for label, keys in (("missing (computed)", self.missing), ("unexpected (ignored)", self.unexpected),
                            ("not needed at inference (not read)", self.skipped)):
            if keys:
                shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
                lines.append(f"  {label}: {shown}")
        return "\n".join(lines)


def load_weights(model: nn.Module, path: str | os.PathLike, device: torch.device | str = "cpu",
                 dtype: torch.dtype | None = None, skip: Callable[[str], bool] = lambda key: False,
                 strict: bool = False) -> LoadReport:
    """Read ``model``'s tensors from a safetensors file and assign them (``load_state_dict(assign=True)``).

    Shapes are checked from the file header before any tensor is read; every mismatch is reported
    at once in a CheckpointError naming the key and both shapes. Floating-point tensors take the
    dtype of the network's tensor (float32 as built), parameters ``dtype`` when given. Keys for
    which ``skip`` is true are not read. With ``strict``, missing or unexpected keys raise too.
    """
    from safetensors import safe_open

    path = Path(path)
    expected = model.state_dict(keep_vars=True)
    report = LoadReport(path)
    with safe_open(str(path), framework="pt", device=str(device)) as f:
        file_keys = list(f.keys())
        mismatches = []
        for key in file_keys:
            if key in expected:
                shape = tuple(f.get_slice(key).get_shape())
                if shape != tuple(expected[key].shape):
                    mismatches.append(f"  {key}: checkpoint {list(shape)} vs network {list(expected[key].shape)}")
                else:
                    report.loaded.append(key)
            elif skip(key):
                report.skipped.append(key)
            else:
                report.unexpected.append(key)
        if mismatches:
            raise CheckpointError(f"{path} does not fit this network ({len(mismatches)} shape mismatches):\n"
                                  + "\n".join(mismatches) + "\nIs config.json the one saved with these weights?")
        report.missing = [k for k in expected if k not in set(file_keys)]
        if strict and (report.missing or report.unexpected):
            raise CheckpointError(f"strict load of {path} failed:\n{report}")
        params = {name for name, _ in model.named_parameters()}
        state = {}
        for key in report.loaded:
            t = f.get_tensor(key)
            target = dtype if dtype is not None and key in params else expected[key].dtype
            state[key] = t.to(target) if t.is_floating_point() else t
    model.load_state_dict(state, strict=False, assign=True)
    return report


def meta_tensor_names(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of parameters and of buffers still on the meta device (never loaded nor computed)."""
    params = [n for n, p in model.named_parameters() if p.is_meta]
    buffers = [n for n, b in model.named_buffers() if b.is_meta]
    return params, buffers


def save_pretrained(model: nn.Module, config: LHMConfig, folder: str | os.PathLike) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (the official checkpoint layout) into ``folder``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(json.dumps(config.to_json(), indent=2), encoding="utf-8")
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS_FILE))
    return folder
