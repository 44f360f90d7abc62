"""Motion files: the official LHM ``smplx_params`` folder (or a .zip of it), AMASS .npz, our own .npz.

Every motion is returned in the project's world: y up, metres, the body facing +z in its zero
pose. LHM motions live in the OpenCV frame of their camera (y down, z forward, camera-to-world
identity) and AMASS in a z-up world; both are rotated into ours with ``Motion.transform`` (the
root turns about SMPL-X neutral's rest pelvis, ``REST_PELVIS``). An LHM motion keeps its camera,
converted alike, so rendering through it reproduces the official framing.

Untrusted input is expected (uploads): malformed files raise ``MotionError`` naming the file and
what is wrong, NaN/Inf are rejected, lengths are capped at ``MAX_FRAMES`` with a warning, and
zip archives are read in memory with limits on members, sizes and compression ratio.
"""
from __future__ import annotations

import json
import os
import stat
import warnings
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import torch

from ..body import skeleton
from ..errors import InputError
from ..render.camera import Camera
from .motion import POSE_FIELDS, Motion, split_full_pose

MAX_FRAMES = 3000  # the official code reads at most 3000 frames (motion_size)
LHM_FPS = 30.0  # LHM renders one frame per JSON file at 30 fps; the files carry no frame rate
NPZ_FORMAT = "lhm-motion"
NPZ_VERSION = 1

# zip uploads: enough for MAX_FRAMES json files of a few kB with a wide margin, nothing more
MAX_ZIP_MEMBERS = 10_000
MAX_ZIP_BYTES = 256 * 2**20
MAX_ZIP_RATIO = 100  # json compresses ~10x; far higher ratios are what zip bombs are made of
MAX_JSON_BYTES = 4 * 2**20

# OpenCV camera frame (x right, y down, z forward) -> our world (y up): a half turn about x
OPENCV_TO_WORLD = torch.tensor([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
# AMASS z-up -> y-up: a quarter turn about x, (x, y, z) -> (x, z, -y)
ZUP_TO_WORLD = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])

_LHM_REQUIRED = ("root_pose", "body_pose", "trans")
# per-frame shapes of the LHM json fields we read; missing face/hand poses default to zero
_LHM_SHAPES = {**POSE_FIELDS, "trans": (3,), "focal": (2,), "princpt": (2,)}


class MotionError(InputError):
    """A motion file or name that cannot be read: says which and what is missing or malformed."""


# ---------------------------------------------------------------------------------------------
# loading


def load_motion(source: str | os.PathLike, *, fps: float | None = None, body=None,
                max_frames: int = MAX_FRAMES) -> Motion:
    """A motion from a preset name, a folder, or a file (.npz, .json, .zip).

    Folders hold ``smplx_params/*.json`` or the json files directly (LHM format). ``.npz`` is our
    own format or AMASS; ``.json`` one LHM frame; ``.zip`` an LHM folder. ``fps`` resamples;
    ``body`` (a Body or Avatar) fits a preset's footwork to that body's skeleton. Motions longer
    than ``max_frames`` are cut with a warning.
    """
    from . import presets

    path = Path(source)
    if isinstance(source, str) and not path.exists() and source in presets.PRESETS:
        motion = presets.preset(source, body=body)
    elif path.is_dir():
        motion = _load_lhm_folder(path, max_frames)
    elif path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".npz":
            motion = _load_npz(path)
        elif suffix == ".json":
            motion = _lhm_motion([(path.name, path.read_bytes())], path.name, path.stem)
        elif suffix == ".zip":
            motion = _load_zip(path, max_frames)
        else:
            raise MotionError(f"'{path.name}': unknown motion file type '{suffix}'; "
                              "expected .npz (ours or AMASS), .json (one LHM frame) or .zip (LHM smplx_params)")
    else:
        raise MotionError(f"'{source}' is neither a motion preset ({', '.join(presets.PRESETS)}) "
                          "nor an existing file or folder")
    if fps is not None:
        motion = motion.resample(fps)
    return _cap(motion, max_frames, str(source))


def _cap(motion: Motion, max_frames: int, source: str) -> Motion:
    if len(motion) <= max_frames:
        return motion
    _warn_cap(source, len(motion), max_frames)
    return motion.trim(0, max_frames)


def _warn_cap(source: str, count: int, max_frames: int) -> None:
    warnings.warn(f"motion '{source}' has {count} frames; keeping the first {max_frames} "
                  "(the cap, as in the official LHM code)", stacklevel=4)


def _load_lhm_folder(folder: Path, max_frames: int) -> Motion:
    params = folder / "smplx_params"
    root = params if params.is_dir() else folder
    files = sorted(p.name for p in root.iterdir() if p.suffix.lower() == ".json" and p.is_file())
    if not files:
        raise MotionError(f"'{folder}' holds no LHM motion: expected json frames in '{folder.name}/smplx_params/' "
                          "or in the folder itself")
    files = _cap_names(files, max_frames, str(folder))
    # as LHM names its renders: after the folder that holds smplx_params
    name = folder.parent.name if folder.name == "smplx_params" else folder.name
    return _lhm_motion([(f, (root / f).read_bytes()) for f in files], str(folder), name)


def _cap_names(names: list[str], max_frames: int, source: str) -> list[str]:
    # frame files beyond the cap are never read
    if len(names) > max_frames:
        _warn_cap(source, len(names), max_frames)
    return names[:max_frames]


def _load_zip(path: Path, max_frames: int) -> Motion:
    """An LHM motion from a zip, read in memory: no file is written, so no path can escape."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as e:
        raise MotionError(f"'{path.name}' is not a readable zip archive ({e})") from e
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_MEMBERS:
            raise MotionError(f"'{path.name}' has {len(infos)} members, more than the limit of {MAX_ZIP_MEMBERS}")
        total = 0
        frames = []
        for info in infos:
            _check_member(info, path.name)
            total += info.file_size
            if total > MAX_ZIP_BYTES:
                raise MotionError(f"'{path.name}' unpacks to more than {MAX_ZIP_BYTES >> 20} MiB (limit)")
            member = PurePosixPath(info.filename)
            if not info.is_dir() and member.suffix.lower() == ".json" and not _hidden(member):
                frames.append(info)
        if not frames:
            raise MotionError(f"'{path.name}' holds no json frames (expected smplx_params/*.json)")
        # prefer the smplx_params folder when the archive holds other json files too
        in_params = [i for i in frames if "smplx_params" in PurePosixPath(i.filename).parts[:-1]]
        frames = in_params or frames
        folders = {PurePosixPath(i.filename).parent for i in frames}
        if len(folders) > 1:
            listed = ", ".join(sorted(map(str, folders)))
            raise MotionError(f"'{path.name}' holds json frames in several folders ({listed}); "
                              "zip one smplx_params folder")
        frames.sort(key=lambda i: PurePosixPath(i.filename).name)
        names = _cap_names([i.filename for i in frames], max_frames, path.name)
        items, unpacked = [], 0
        for n in names:
            data = _read_member(archive, n, path.name)
            # headers can lie about sizes: count what actually comes out
            unpacked += len(data)
            if unpacked > MAX_ZIP_BYTES:
                raise MotionError(f"'{path.name}' unpacks to more than {MAX_ZIP_BYTES >> 20} MiB (limit)")
            items.append((PurePosixPath(n).name, data))
    return _lhm_motion(items, path.name, path.stem)


def _hidden(member: PurePosixPath) -> bool:
    # macOS archivers add __MACOSX/ and ._name resource forks next to the real files
    return any(part.startswith(".") or part == "__MACOSX" for part in member.parts)


def _check_member(info: zipfile.ZipInfo, archive: str) -> None:
    name = info.filename
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
        raise MotionError(f"'{archive}': member '{name}' points outside the archive (unsafe path)")
    if stat.S_ISLNK(info.external_attr >> 16):
        raise MotionError(f"'{archive}': member '{name}' is a symbolic link (not allowed)")
    if info.flag_bits & 0x1:
        raise MotionError(f"'{archive}': member '{name}' is encrypted")
    if info.file_size > MAX_JSON_BYTES and not info.is_dir():
        raise MotionError(f"'{archive}': member '{name}' is {info.file_size} bytes, "
                          f"over the {MAX_JSON_BYTES >> 20} MiB limit")
    if info.file_size > 2**16 and info.file_size > MAX_ZIP_RATIO * max(info.compress_size, 1):
        raise MotionError(f"'{archive}': member '{name}' is compressed {info.file_size // max(info.compress_size, 1)}:1 "
                          f"(over {MAX_ZIP_RATIO}:1; a zip bomb?)")


def _read_member(archive: zipfile.ZipFile, name: str, label: str) -> bytes:
    # the sizes in the header may lie: never read more than the limit
    try:
        with archive.open(name) as f:
            data = f.read(MAX_JSON_BYTES + 1)
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError, EOFError) as e:
        raise MotionError(f"'{label}': member '{name}' cannot be read ({e})") from e
    if len(data) > MAX_JSON_BYTES:
        raise MotionError(f"'{label}': member '{name}' unpacks to more than {MAX_JSON_BYTES >> 20} MiB")
    return data


def _lhm_motion(items: list[tuple[str, bytes]], source: str, name: str) -> Motion:
    """Parse LHM json frames (OpenCV camera frame) into a Motion in our world, camera included."""
    frames = [_parse_frame(data, f"{source}: {fname}" if fname != source else source) for fname, data in items]
    keys0 = set(frames[0])
    for (fname, _), fr in zip(items, frames):
        for key in ("focal", "princpt", "expr"):
            if (key in fr) != (key in keys0):
                raise MotionError(f"'{source}': '{key}' is in some frames but not in '{fname}'")
    fields = {k: torch.from_numpy(np.stack([fr[k] for fr in frames])).float() for k in (*POSE_FIELDS, "trans")}
    expr = None
    if "expr" in keys0:
        lengths = {len(fr["expr"]) for fr in frames}
        if len(lengths) > 1:
            raise MotionError(f"'{source}': expr has different lengths across frames ({sorted(lengths)})")
        expr = torch.from_numpy(np.stack([fr["expr"] for fr in frames])).float()
    betas = torch.from_numpy(frames[0]["betas"]).float() if "betas" in frames[0] else None
    camera = None
    if "focal" in keys0 and "princpt" in keys0:
        focal = np.stack([fr["focal"] for fr in frames])
        princpt = np.stack([fr["princpt"] for fr in frames])
        camera = _lhm_camera(focal, princpt, source)
    motion = _build(source, fields, fps=LHM_FPS, camera=camera, name=name, expr=expr, betas=betas)
    return motion.transform(OPENCV_TO_WORLD)


def _parse_frame(data: bytes, label: str) -> dict[str, np.ndarray]:
    try:
        raw = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MotionError(f"'{label}' is not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise MotionError(f"'{label}' must hold a JSON object of SMPL-X parameters, got {type(raw).__name__}")
    missing = [k for k in _LHM_REQUIRED if k not in raw]
    if missing:
        raise MotionError(f"'{label}' is missing {', '.join(missing)} (an LHM frame needs {', '.join(_LHM_REQUIRED)})")
    out = {}
    for key, shape in _LHM_SHAPES.items():
        if key in raw:
            out[key] = _array(raw[key], shape, f"{label}: {key}")
        elif key in POSE_FIELDS:
            out[key] = np.zeros(shape)
    for key in ("expr", "betas"):
        if key in raw:
            out[key] = _array(raw[key], None, f"{label}: {key}")
    return out


def _array(value, shape: tuple[int, ...] | None, label: str) -> np.ndarray:
    """A finite float array of ``shape`` (flat lists of the right size are accepted)."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise MotionError(f"'{label}' is not an array of numbers") from e
    if shape is None:
        a = a.reshape(-1)
    elif a.size == int(np.prod(shape)):
        a = a.reshape(shape)
    else:
        raise MotionError(f"'{label}' has shape {list(a.shape)}, expected {list(shape)}")
    if not np.isfinite(a).all():
        raise MotionError(f"'{label}' contains NaN or Inf values")
    return a


def _lhm_camera(focal: np.ndarray, princpt: np.ndarray, source: str) -> Camera:
    """LHM's camera (OpenCV frame, camera-to-world identity): K from focal/princpt, size 2*princpt."""
    if (focal <= 0).any() or (princpt <= 0).any():
        raise MotionError(f"'{source}': focal and princpt must be positive")
    width, height = int(2 * princpt[0, 0]), int(2 * princpt[0, 1])
    K = torch.zeros(len(focal), 3, 3)
    K[:, 0, 0], K[:, 1, 1] = torch.from_numpy(focal[:, 0]), torch.from_numpy(focal[:, 1])
    K[:, 0, 2], K[:, 1, 2] = torch.from_numpy(princpt[:, 0]), torch.from_numpy(princpt[:, 1])
    K[:, 2, 2] = 1.0
    if bool((K == K[:1]).all()):
        K = K[0]  # the usual case: one camera for the whole clip
    return Camera(K, torch.eye(4), max(width, 1), max(height, 1))


def _build(source: str, fields: dict, **kwargs) -> Motion:
    """Motion(...) with its validation errors reported against the file."""
    try:
        return Motion(**fields, **kwargs)
    except ValueError as e:
        raise MotionError(f"'{source}': {e}") from e


def _load_npz(path: Path) -> Motion:
    # np.load reads a renamed .npy as a bare array and blames anything else on pickles; an .npz is a zip
    if not zipfile.is_zipfile(path):
        raise MotionError(f"'{path.name}' is not a readable .npz (it is not a zip archive of arrays); "
                          "use a motion saved by lhm (save_motion) or an AMASS .npz")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (ValueError, OSError, zipfile.BadZipFile) as e:
        raise MotionError(f"'{path.name}' is not a readable .npz ({e})") from e
    if "format" in data:
        if str(data["format"]) != NPZ_FORMAT:
            raise MotionError(f"'{path.name}' has format '{data['format']}', expected '{NPZ_FORMAT}'")
        return _from_npz(data, path.name)
    if "poses" in data or "root_orient" in data:
        return _from_amass(data, path.name, path.stem)
    raise MotionError(f"'{path.name}' is neither our motion .npz (no 'format' key) nor AMASS (no 'poses' array); "
                      f"it holds: {', '.join(sorted(data)) or 'nothing'}")


def _get(data: dict, key: str, source: str, shape: tuple | None = None) -> np.ndarray:
    if key not in data:
        raise MotionError(f"'{source}' is missing '{key}'")
    a = data[key]
    if a.dtype.kind not in "fiub":
        raise MotionError(f"'{source}': '{key}' must be numeric, got dtype {a.dtype}")
    if shape is not None and (a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape))):
        want = "[" + ",".join("F" if s is None else str(s) for s in shape) + "]"
        raise MotionError(f"'{source}': '{key}' has shape {list(a.shape)}, expected {want}")
    if a.dtype.kind == "f" and not np.isfinite(a).all():
        raise MotionError(f"'{source}': '{key}' contains NaN or Inf values")
    return a


def _from_npz(data: dict, source: str) -> Motion:
    version = int(_get(data, "version", source))
    if version > NPZ_VERSION:
        raise MotionError(f"'{source}' is format version {version}; this lhm reads up to {NPZ_VERSION}")
    fields = {k: torch.from_numpy(_get(data, k, source, (None, *shape)).astype(np.float32))
              for k, shape in {**POSE_FIELDS, "trans": (3,)}.items()}
    optional = {}
    for key, shape in (("expr", (None, None)), ("betas", (None,)), ("contacts", (None, 2))):
        if key in data:
            a = _get(data, key, source, shape)
            optional[key] = torch.from_numpy(a.astype(bool if key == "contacts" else np.float32))
    camera = None
    if "camera_K" in data:
        K = torch.from_numpy(_get(data, "camera_K", source).astype(np.float32))
        V = torch.from_numpy(_get(data, "camera_viewmat", source).astype(np.float32))
        size = _get(data, "camera_size", source, (2,))
        try:
            camera = Camera(K, V, int(size[0]), int(size[1]))
        except ValueError as e:
            raise MotionError(f"'{source}': {e}") from e
    return _build(source, fields, **optional, camera=camera, fps=float(_get(data, "fps", source)),
                  name=str(data.get("name", "")), loops=bool(data.get("loops", False)))


# SMPL-family pose vectors: (joints in the vector) -> where the 55 SMPL-X joints take them from
_AMASS_LAYOUTS = {
    22: {"body": 22},  # SMPL without its two hand joints (66 values)
    24: {"body": 22},  # SMPL: joints 22/23 are hands without fingers, dropped
    52: {"body": 22, "hands": 22},  # SMPL-H: 30 finger joints at 22..51, no jaw or eyes
    55: {"body": 22, "face": 22, "hands": 25},  # SMPL-X
}


def _from_amass(data: dict, source: str, name: str) -> Motion:
    """AMASS-style arrays (z-up world): ``poses`` [F,66|72|156|165] or root_orient/pose_body/... splits."""
    if "poses" in data:
        poses = _get(data, "poses", source, (None, None))
        if poses.shape[1] % 3 or poses.shape[1] // 3 not in _AMASS_LAYOUTS:
            raise MotionError(f"'{source}': 'poses' has {poses.shape[1]} values per frame; expected 66 or 72 (SMPL), "
                              "156 (SMPL-H) or 165 (SMPL-X)")
        poses = poses.reshape(len(poses), -1, 3)
        layout = _AMASS_LAYOUTS[poses.shape[1]]
        full = np.zeros((len(poses), skeleton.NUM_JOINTS, 3))
        full[:, :22] = poses[:, :22]
        if "face" in layout:
            full[:, 22:25] = poses[:, 22:25]
        if "hands" in layout:
            h = layout["hands"]
            full[:, 25:55] = poses[:, h:h + 30]
    else:
        F = len(_get(data, "root_orient", source, (None, 3)))
        full = np.zeros((F, skeleton.NUM_JOINTS, 3))
        full[:, 0] = data["root_orient"]
        full[:, 1:22] = _get(data, "pose_body", source, (F, 63)).reshape(F, 21, 3)
        for key, joints in (("pose_jaw", slice(22, 23)), ("pose_eye", slice(23, 25)), ("pose_hand", slice(25, 55))):
            if key in data:
                n = joints.stop - joints.start
                full[:, joints] = _get(data, key, source, (F, 3 * n)).reshape(F, n, 3)
    F = len(full)
    trans = _get(data, "trans", source, (F, 3)) if "trans" in data else np.zeros((F, 3))
    fps = next((float(_get(data, k, source)) for k in ("mocap_framerate", "mocap_frame_rate") if k in data), None)
    if fps is None:
        warnings.warn(f"'{source}' gives no mocap_framerate; assuming {LHM_FPS:g} fps", stacklevel=4)
        fps = LHM_FPS
    betas = torch.from_numpy(_get(data, "betas", source).astype(np.float32).reshape(-1)) if "betas" in data else None
    pose = split_full_pose(torch.from_numpy(full).float())
    motion = _build(source, {**pose, "trans": torch.from_numpy(trans).float()}, fps=fps, name=name, betas=betas)
    return motion.transform(ZUP_TO_WORLD)


# ---------------------------------------------------------------------------------------------
# saving


def save_motion(motion: Motion, path: str | os.PathLike, format: str | None = None, body=None) -> Path:
    """Write a motion; returns the path.

    ``format``: "npz" (ours, lossless: camera, fps, name, contacts...), "lhm" (an LHM folder with
    ``smplx_params/*.json``), "lhm-zip" (the same zipped) or "amass" (.npz, z-up, SMPL-X 165 poses).
    By default it follows the path: .npz -> ours, .zip -> lhm-zip, otherwise an LHM folder. LHM files
    live in their camera's frame: without a camera of its own the motion gets the default one
    (``motion_camera`` on ``body``, the free body by default).
    """
    path = Path(path)
    if format is None:
        format = {".npz": "npz", ".zip": "lhm-zip"}.get(path.suffix.lower(), "lhm")
    if format == "npz":
        return _save_npz(motion, path)
    if format == "amass":
        return _save_amass(motion, path)
    if format in ("lhm", "lhm-zip"):
        frames = _lhm_frames(motion, body)
        if format == "lhm":
            params = path / "smplx_params"
            params.mkdir(parents=True, exist_ok=True)
            for name, text in frames:
                (params / name).write_text(text)
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            for name, text in frames:
                z.writestr(f"smplx_params/{name}", text)
        return path
    raise ValueError(f"unknown motion format '{format}'; choose npz, lhm, lhm-zip or amass")


def _save_npz(motion: Motion, path: Path) -> Path:
    arrays = {k: getattr(motion, k).detach().cpu().numpy() for k in (*POSE_FIELDS, "trans")}
    for key in ("expr", "betas", "contacts"):
        value = getattr(motion, key)
        if value is not None:
            arrays[key] = value.detach().cpu().numpy()
    if motion.camera is not None:
        cam = motion.camera
        arrays.update(camera_K=cam.K.detach().cpu().numpy(), camera_viewmat=cam.viewmat.detach().cpu().numpy(),
                      camera_size=np.array([cam.width, cam.height]))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, format=np.array(NPZ_FORMAT), version=np.array(NPZ_VERSION), fps=np.array(motion.fps),
                        name=np.array(motion.name), loops=np.array(motion.loops), **arrays)
    return path


def _save_amass(motion: Motion, path: Path) -> Path:
    m = motion.transform(ZUP_TO_WORLD.T)
    arrays = dict(poses=m.full_pose().reshape(len(m), -1).detach().numpy(), trans=m.trans.detach().numpy(),
                  mocap_frame_rate=np.array(m.fps), gender=np.array("neutral"))
    if m.betas is not None:
        arrays["betas"] = m.betas.detach().numpy()
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def _lhm_frames(motion: Motion, body) -> list[tuple[str, str]]:
    """(file name, json text) per frame, in the camera's OpenCV frame as LHM expects."""
    cam = motion.camera
    if cam is None:
        from .cameras import motion_camera

        cam = motion_camera(motion, body, mode="auto")
    F = len(motion)
    V = cam.viewmat.expand(F, 4, 4)
    K = cam.K.expand(F, 3, 3)
    m = motion.transform(V[:, :3, :3], V[:, :3, 3])
    betas = motion.betas.tolist() if motion.betas is not None else [0.0] * 10
    out = []
    for f in range(F):
        frame = {k: getattr(m, k)[f].tolist() for k in (*POSE_FIELDS, "trans")}
        if m.expr is not None:
            frame["expr"] = m.expr[f].tolist()
        # LHM renders at (2 cx, 2 cy) with the principal point at the centre
        frame.update(betas=betas, focal=[float(K[f, 0, 0]), float(K[f, 1, 1])],
                     princpt=[float(K[f, 0, 2]), float(K[f, 1, 2])], img_size_wh=[cam.width, cam.height])
        out.append((f"{f + 1:05d}.json", json.dumps(frame)))
    return out


__all__ = ["MotionError", "load_motion", "save_motion", "MAX_FRAMES", "OPENCV_TO_WORLD", "ZUP_TO_WORLD"]
