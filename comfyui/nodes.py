"""The LHM nodes: thin wrappers that turn ComfyUI inputs into calls of the ``lhm`` package.

Everything model-related (finding files, engines, posing, rendering, export) lives in ``lhm``;
this module only converts between ComfyUI's types (IMAGE [B,H,W,3], MASK [B,H,W], SPLAT) and the
package's, reports progress, and turns missing files into messages that name ComfyUI's folders.
"""
from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import folder_paths
import numpy as np
import torch

import lhm
from lhm.errors import InputError
from lhm.io.ply import SH_C0
from lhm.motion import MAX_FRAMES, Motion
from lhm.pipeline import ENGINES as PIPELINE_ENGINES
from lhm.pipeline import MAX_FPS, SIZE_RANGE, Pipeline, parse_colour, timed_motion

log = logging.getLogger(__name__)

CATEGORY = "LHM"
MODEL_FOLDER = "lhm"  # ComfyUI/models/lhm, also a section name in extra_model_paths.yaml
ENGINES = {("Fit" if name == "fit" else name): name for name in PIPELINE_ENGINES}
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
CAMERAS = ("auto", "front", "orbit", "motion")
POSES = ("tpose", "canonical", "motion frame")
MAX_SIZE = SIZE_RANGE[1]
MAX_SECONDS = MAX_FRAMES / 30  # the package renders at most MAX_FRAMES frames: 100 s at the presets' 30 fps


def register_model_folder() -> None:
    """Make ``models/lhm`` a ComfyUI model folder, keeping paths that extra_model_paths.yaml gave it."""
    default = os.path.join(folder_paths.models_dir, MODEL_FOLDER)
    paths, extensions = folder_paths.folder_names_and_paths.get(MODEL_FOLDER, ([], set()))
    # a new name registered by add_model_folder_path matches every file; filter to weight files as ComfyUI does
    folder_paths.folder_names_and_paths[MODEL_FOLDER] = (
        [*paths, default] if default not in paths else list(paths),
        set(extensions) | set(folder_paths.supported_pt_extensions))


register_model_folder()


# ---------------------------------------------------------------------------------------------
# helpers


def _progress(total: int):
    """A ``progress(fraction, desc)`` callback driving ComfyUI's progress bar and honouring Cancel.

    Outside ComfyUI (no ``comfy`` package) it does nothing, so the nodes stay usable from plain Python.
    """
    try:
        import comfy.model_management
        import comfy.utils
    except ImportError:
        return None
    bar = comfy.utils.ProgressBar(total)
    done = 0

    def report(fraction: float, desc: str) -> None:
        nonlocal done
        # raising here is how a long render stops when the user presses Cancel
        comfy.model_management.throw_exception_if_processing_interrupted()
        step = min(total, max(done, int(round(fraction * total))))
        if step > done:
            bar.update(step - done)
            done = step

    return report


def _models_dir() -> str:
    """The models folders the package searches ($LHM_MODELS_DIR form): every registered ``lhm`` path."""
    paths = folder_paths.get_folder_paths(MODEL_FOLDER) or [os.path.join(folder_paths.models_dir, MODEL_FOLDER)]
    return os.pathsep.join(paths)


@contextlib.contextmanager
def _models_env(root: str):
    """Point the package's model search ($LHM_MODELS_DIR) at ``root`` (folders joined by os.pathsep) unless the user set it."""
    if os.environ.get("LHM_MODELS_DIR"):
        yield
        return
    os.environ["LHM_MODELS_DIR"] = root
    try:
        yield
    finally:
        os.environ.pop("LHM_MODELS_DIR", None)


def _clean_path(text: str) -> Path | None:
    """A path typed or pasted by a user (None when blank): surrounding spaces and quotes stripped, ``~`` expanded.

    Relative paths are looked up in ComfyUI's input folder when they do not exist as given.
    """
    text = text.strip().strip("\"'").strip()
    if not text:
        return None
    path = Path(text).expanduser()
    if not path.is_absolute() and not path.exists():
        in_input = Path(folder_paths.get_input_directory()) / path
        if in_input.exists():
            return in_input
    return path


@dataclass(frozen=True)
class MotionRequest:
    """The LHM_MOTION value: what LHM Motion asks for, loaded by the nodes that also get the avatar.

    Loading it there solves a preset on the avatar's own body, so its feet stay planted (as ``Pipeline.animate``).
    """

    source: str | Path  # a preset name, or the path of a motion file or folder
    start_frame: int
    frame_count: int  # 0: all frames from start_frame
    fps: float | None  # None: the motion's own
    seconds: float | None  # None: the motion's length

    def load(self, body=None) -> Motion:
        """The motion fitted to ``body`` (a Body or Avatar; None: the free body), cut, resampled and looped."""
        motion = lhm.load_motion(self.source, body=body)
        if self.start_frame >= len(motion):
            raise InputError(f"start_frame {self.start_frame} is past the end of '{motion.name or self.source}' "
                             f"({len(motion)} frames)")
        if self.start_frame or self.frame_count:
            motion = motion.trim(self.start_frame, self.start_frame + self.frame_count if self.frame_count else None)
        return timed_motion(motion, self.fps, self.seconds)


def _pose_args(avatar, pose: str, motion: MotionRequest | None, frame: int) -> tuple[str | int, Motion | None]:
    """The ``pose`` and ``motion`` arguments of ``Avatar.posed`` for the node's pose choice."""
    if pose != "motion frame":
        return pose, None
    if motion is None:
        raise InputError("pose 'motion frame' needs a motion: connect an LHM Motion node to the 'motion' input")
    loaded = motion.load(avatar)
    if not 0 <= frame < len(loaded):
        raise InputError(f"frame {frame} is outside the motion's {len(loaded)} frames (0 to {len(loaded) - 1})")
    return frame, loaded


# ---------------------------------------------------------------------------------------------
# nodes

_pipelines: dict[tuple[str, str, str], Pipeline] = {}


class LHMLoadModel:
    """Loads an engine once; later runs with the same engine, device and precision reuse it."""

    DESCRIPTION = ("Loads an LHM engine. Fit needs no model files. The LHM checkpoints are looked up in "
                   "ComfyUI/models/lhm (the layout of the official pretrained_models folder) or downloaded "
                   "from the Hugging Face hub; they also need the LHM prior files (SMPL-X, Sapiens).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("LHM_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("The loaded engine, for LHM Reconstruct and LHM Animate.",)

    @classmethod
    def INPUT_TYPES(cls):
        """Engine, device and precision."""
        return {"required": {
            "engine": (list(ENGINES), {"default": "Fit", "tooltip": (
                "Fit: fits Gaussians to the photo on a built-in body, no download, seconds on CPU. "
                "LHM-*: the official networks (weights from models/lhm or the hub, plus SMPL-X); "
                "-HF variants are the later releases; MINI is the smallest.")}),
            "device": (list(DEVICES), {"default": "auto", "tooltip": (
                "auto: CUDA when available, else CPU. cuda fails with a message when no GPU is visible.")}),
            "precision": (list(PRECISIONS), {"default": "auto", "tooltip": (
                "Weights' dtype for the LHM engines (auto = fp32, as the official code). bf16/fp16 halve "
                "GPU memory at some cost in fidelity. The Fit engine always computes in fp32.")}),
        }}

    def load(self, engine: str, device: str, precision: str):
        """Return the cached pipeline for these settings, loading it (and dropping the previous one) if needed."""
        key = (engine, device, precision)
        if key not in _pipelines:
            _pipelines.clear()  # one model at a time: checkpoints take GBs
            _pipelines[key] = _load_pipeline(engine, device, precision)
        return (_pipelines[key],)


def _load_pipeline(engine: str, device: str, precision: str) -> Pipeline:
    if engine not in ENGINES:
        raise InputError(f"unknown engine '{engine}'; choose one of {', '.join(ENGINES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' was chosen but PyTorch sees no CUDA GPU here; choose 'auto' or 'cpu'")
    kwargs = {}
    if ENGINES[engine] == "fit":
        if precision not in ("auto", "fp32"):
            log.warning("LHM: the Fit engine computes in fp32; precision '%s' is ignored", precision)
    elif PRECISIONS[precision] is not None:
        kwargs["dtype"] = PRECISIONS[precision]
    root = _models_dir()
    try:
        with _models_env(root):
            return Pipeline.from_pretrained(ENGINES[engine], device=None if device == "auto" else device, **kwargs)
    except FileNotFoundError as e:  # the loader's own message says what is missing and where it comes from
        raise type(e)(
            f"{e}\nIn ComfyUI, put the checkpoint folder (config.json + model.safetensors) and the LHM prior "
            f"files (the contents of pretrained_models/) in one of ComfyUI's 'lhm' model folders: "
            f"{root.replace(os.pathsep, ', ')} (more can be added under 'lhm' in extra_model_paths.yaml).") from e


class LHMReconstruct:
    """Photo to avatar with the loaded engine."""

    DESCRIPTION = "Makes an animatable 3D Gaussian avatar of the person in the photo."
    CATEGORY = CATEGORY
    FUNCTION = "reconstruct"
    RETURN_TYPES = ("LHM_AVATAR", "IMAGE", "MASK")
    RETURN_NAMES = ("avatar", "crop", "crop_mask")
    OUTPUT_TOOLTIPS = ("The avatar, for LHM Animate, LHM Save Gaussians and LHM To Splat.",
                       "The person as the engine saw them: cropped and padded to the LHM framing.",
                       "The person's mask on that crop (1 = person).")

    @classmethod
    def INPUT_TYPES(cls):
        """Model, photo, background removal; optional person mask."""
        return {
            "required": {
                "model": ("LHM_MODEL", {"tooltip": "From LHM Load Model."}),
                "image": ("IMAGE", {"tooltip": (
                    "A photo of one person facing the camera, whole body or from the waist up (the legs are then "
                    "guessed). Only the first image of a batch is used.")}),
                "remove_background": ("BOOLEAN", {"default": True, "tooltip": (
                    "Find the person with a segmentation model. Ignored when a mask is connected "
                    "(the mask is used as given).")}),
            },
            "optional": {
                "mask": ("MASK", {"tooltip": (
                    "The person's mask (1 = person) for this image; first mask of a batch. "
                    "LoadImage's MASK is the opposite (1 = transparent): pass it through InvertMask first.")}),
            },
        }

    def reconstruct(self, model: Pipeline, image: torch.Tensor, remove_background: bool, mask=None):
        """Run the pipeline on the first image; return the avatar and the crop it was made from."""
        # the package reads tensors of any size and stretches a mask of another size (with a warning)
        person_mask = None if mask is None else (mask[0] if mask.dim() == 3 else mask)
        avatar = model.reconstruct(image[0], person_mask, remove_background=remove_background, progress=_progress(100))
        for warning in avatar.info.get("warnings", []):
            log.warning("LHM Reconstruct: %s", warning)
        crop = avatar.info["person"].crop
        rgb = torch.from_numpy(np.ascontiguousarray(crop.rgb, dtype=np.float32)).clamp(0, 1)[None]
        alpha = torch.from_numpy(np.ascontiguousarray(crop.mask, dtype=np.float32)).clamp(0, 1)[None]
        return avatar, rgb, alpha


class LHMMotion:
    """A preset or a motion file, cut, retimed and looped."""

    DESCRIPTION = ("A motion to drive the avatar: a preset, or a file (LHM smplx_params folder or .zip, "
                   "one LHM .json frame, AMASS .npz, or lhm's own .npz). Presets are fitted to the avatar's "
                   "body where it is used, so the feet stay planted.")
    CATEGORY = CATEGORY
    FUNCTION = "motion"
    RETURN_TYPES = ("LHM_MOTION",)
    RETURN_NAMES = ("motion",)
    OUTPUT_TOOLTIPS = ("The motion, for LHM Animate, LHM Save Gaussians and LHM To Splat.",)

    @classmethod
    def INPUT_TYPES(cls):
        """Preset, frame range, frame rate, length; optional file path."""
        presets = [m.name for m in lhm.list_motions()]
        return {
            "required": {
                "preset": (presets, {"default": "wave" if "wave" in presets else presets[0], "tooltip": (
                    "A built-in motion. Ignored when motion_file is set.")}),
                "start_frame": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES - 1, "tooltip": (
                    "First frame of the motion to keep (in the motion's own frames).")}),
                "frame_count": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES, "tooltip": (
                    "Frames to keep from start_frame; 0 keeps all the rest.")}),
                "fps": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_FPS, "step": 1.0, "tooltip": (
                    "Frame rate to resample to; 0 keeps the motion's own (presets: 30).")}),
                "loop_to_seconds": ("FLOAT", {"default": 0.0, "min": 0.0, "max": MAX_SECONDS, "step": 0.5, "tooltip": (
                    "Length in seconds: a shorter motion repeats (blended at the seam), a longer one is cut; "
                    "0 keeps its length.")}),
            },
            "optional": {
                "motion_file": ("STRING", {"default": "", "tooltip": (
                    "Path of a motion file or folder; overrides the preset. Quotes around a pasted path are "
                    "removed; a relative path is also looked up in ComfyUI's input folder.")}),
            },
        }

    def motion(self, preset: str, start_frame: int, frame_count: int, fps: float, loop_to_seconds: float,
               motion_file: str = ""):
        """The request for the nodes that get the avatar; loaded once here so that a bad file or range fails now."""
        request = MotionRequest(_clean_path(motion_file) or preset, start_frame, frame_count, fps or None,
                                loop_to_seconds or None)
        request.load()
        return (request,)


class LHMAnimate:
    """Renders the avatar performing a motion."""

    DESCRIPTION = "Renders the avatar performing the motion: frames, their alpha, and the frame rate."
    CATEGORY = CATEGORY
    FUNCTION = "animate"
    RETURN_TYPES = ("IMAGE", "MASK", "FLOAT")
    RETURN_NAMES = ("frames", "alpha", "fps")
    OUTPUT_TOOLTIPS = ("The rendered frames [F,H,W,3].", "Coverage of the avatar per frame (1 = avatar).",
                       "The motion's frame rate, for video and animated-image savers.")

    @classmethod
    def INPUT_TYPES(cls):
        """Model, avatar, motion, image size, background, camera."""
        return {"required": {
            "model": ("LHM_MODEL", {"tooltip": "From LHM Load Model: renders on its device."}),
            "avatar": ("LHM_AVATAR", {"tooltip": "From LHM Reconstruct."}),
            "motion": ("LHM_MOTION", {"tooltip": "From LHM Motion."}),
            "width": ("INT", {"default": 512, "min": SIZE_RANGE[0], "max": MAX_SIZE, "step": 8, "tooltip": "Frame width in pixels."}),
            "height": ("INT", {"default": 512, "min": SIZE_RANGE[0], "max": MAX_SIZE, "step": 8, "tooltip": "Frame height in pixels."}),
            "background": ("STRING", {"default": "#FFFFFF", "tooltip": "Background colour as hex, e.g. #FFFFFF or #00FF00."}),
            "camera": (list(CAMERAS), {"default": "auto", "tooltip": (
                "auto: the motion's own camera when it has one, else a front view that follows the body; "
                "front: one fixed front view; orbit: circles the avatar once; motion: the motion's camera only.")}),
        }}

    def animate(self, model: Pipeline, avatar, motion: MotionRequest, width: int, height: int, background: str,
                camera: str):
        """Render every frame of the motion, fitted to the avatar's body; Cancel in ComfyUI stops between frames."""
        colour = parse_colour(background)
        fitted = motion.load(avatar)
        clip = model.animate(avatar, fitted, size=(width, height), camera=camera, background=colour,
                             progress=_progress(len(fitted)))
        return clip.rgb.float().div_(255.0), clip.alpha.float().clamp_(0, 1), float(clip.fps)


def _pose_inputs():
    """Required and optional inputs shared by the nodes that pose the avatar."""
    return {
        "pose": (list(POSES), {"default": "tpose", "tooltip": (
            "tpose: arms out, the usual 3DGS export; canonical: the engine's A-shaped rest pose; "
            "motion frame: the pose at 'frame' of the connected motion.")}),
    }, {
        "motion": ("LHM_MOTION", {"tooltip": "Needed for pose 'motion frame'."}),
        "frame": ("INT", {"default": 0, "min": 0, "max": MAX_FRAMES - 1, "tooltip": (
            "Frame of the motion for pose 'motion frame' (0 = first).")}),
    }


class LHMSaveGaussians:
    """Writes the avatar as 3DGS .ply and .splat in ComfyUI's output folder."""

    DESCRIPTION = ("Saves the avatar as a 3D Gaussian splat: .ply (3DGS properties, opens in splat viewers and "
                   "Load3D) and .splat (web viewers).")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING", "STRING")
    RETURN_NAMES = ("ply_path", "splat_path")
    OUTPUT_TOOLTIPS = ("Full path of the written .ply.", "Full path of the written .splat.")

    @classmethod
    def INPUT_TYPES(cls):
        """Avatar, pose, file name prefix; optional motion and frame."""
        required, optional = _pose_inputs()
        return {
            "required": {
                "avatar": ("LHM_AVATAR", {"tooltip": "From LHM Reconstruct."}),
                **required,
                "filename_prefix": ("STRING", {"default": "lhm/avatar", "tooltip": (
                    "File name prefix in ComfyUI's output folder; may contain sub-folders. A counter is added.")}),
            },
            "optional": optional,
        }

    def save(self, avatar, pose: str, filename_prefix: str, motion: MotionRequest | None = None, frame: int = 0):
        """Write both files, numbered after what is already in the folder; show their paths."""
        posed, motion = _pose_args(avatar, pose, motion, frame)
        out_dir = folder_paths.get_output_directory()
        folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, out_dir)
        ply, splat = (Path(folder) / f"{name}_{counter:05}_{ext}" for ext in (".ply", ".splat"))
        avatar.save_ply(ply, pose=posed, motion=motion)
        avatar.save_splat(splat, pose=posed, motion=motion)
        shown = [Path(subfolder, p.name).as_posix() for p in (ply, splat)]
        return {"ui": {"text": shown}, "result": (str(ply), str(splat))}


def splat_type():
    """ComfyUI's SPLAT class (``comfy_api.latest.Types.SPLAT``), or None on versions without it."""
    try:
        from comfy_api.latest import Types
    except ImportError:
        return None
    return getattr(Types, "SPLAT", None)


class LHMToSplat:
    """The avatar as ComfyUI's own SPLAT, for the built-in splat nodes (render, transform, save)."""

    DESCRIPTION = "Hands the avatar to ComfyUI's Gaussian-splat nodes (Render Splat, Splat To File3D, ...)."
    CATEGORY = CATEGORY
    FUNCTION = "to_splat"
    RETURN_TYPES = ("SPLAT",)
    RETURN_NAMES = ("splat",)
    OUTPUT_TOOLTIPS = ("One Gaussian set (batch 1) in world metres, y up.",)

    @classmethod
    def INPUT_TYPES(cls):
        """Avatar and pose; optional motion and frame."""
        required, optional = _pose_inputs()
        return {"required": {"avatar": ("LHM_AVATAR", {"tooltip": "From LHM Reconstruct."}), **required},
                "optional": optional}

    def to_splat(self, avatar, pose: str, motion: MotionRequest | None = None, frame: int = 0):
        """Pose the avatar and pack it as a batch of one SPLAT (DC-only SH from RGB colours)."""
        g = avatar.posed(*_pose_args(avatar, pose, motion, frame)).detach().to("cpu", torch.float32)
        # RGB -> degree-0 SH as in 3DGS; SH colours (already in that convention) pass through
        sh = ((g.colors - 0.5) / SH_C0)[:, None] if g.sh_degree is None else g.colors
        n = len(g)
        return (splat_type()(positions=g.means[None].contiguous(), scales=g.scales[None].contiguous(),
                             rotations=torch.nn.functional.normalize(g.quats, dim=-1)[None].contiguous(),
                             opacities=g.opacities[None, :, None].contiguous(), sh=sh[None].contiguous(),
                             counts=torch.tensor([n], dtype=torch.int64)),)


NODE_CLASS_MAPPINGS = {
    "LHMLoadModel": LHMLoadModel,
    "LHMReconstruct": LHMReconstruct,
    "LHMMotion": LHMMotion,
    "LHMAnimate": LHMAnimate,
    "LHMSaveGaussians": LHMSaveGaussians,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "LHMLoadModel": "LHM Load Model",
    "LHMReconstruct": "LHM Reconstruct",
    "LHMMotion": "LHM Motion",
    "LHMAnimate": "LHM Animate",
    "LHMSaveGaussians": "LHM Save Gaussians",
}
if splat_type() is not None:
    NODE_CLASS_MAPPINGS["LHMToSplat"] = LHMToSplat
    NODE_DISPLAY_NAME_MAPPINGS["LHMToSplat"] = "LHM To Splat"
else:
    log.info("LHM: 'LHM To Splat' is not registered: this ComfyUI has no SPLAT type (comfy_api.latest.Types.SPLAT, "
             "ComfyUI 2026-05 and later); the other LHM nodes work")
