"""The Space: one photo to an animated 3D Gaussian avatar, all work done by the ``lhm`` package.

    python app.py        # serves on $GRADIO_SERVER_NAME:$GRADIO_SERVER_PORT (default 127.0.0.1:7860)

Runs as is on CPU (slowly) or a GPU; on Hugging Face ZeroGPU the heavy part runs under ``@spaces.GPU``
with a duration estimated from the request. API endpoints (gradio_client): ``/generate`` (avatar and
video) and ``/reconstruct`` (avatar only).
"""
from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import lhm  # noqa: I001 - first: it sets OpenMP's wait policy, which must happen before torch loads
import gradio as gr
import spaces
from lhm.errors import InputError
from lhm.io import save_ply, save_video
from lhm.pipeline import ENGINES, Pipeline, check_camera, parse_colour, save_outputs, timed_motion

log = logging.getLogger("lhm.app")

ROOT = Path(__file__).resolve().parent
EXAMPLES_DIR = ROOT / "examples"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
# GPU memory the official model card asks for (lhm-reference §1.5); the Fit engine needs no weights
GPU_MEMORY_GB = {"LHM-MINI": 16, "LHM-500M": 18, "LHM-500M-HF": 18, "LHM-1B": 22, "LHM-1B-HF": 22}
ENGINE_CHOICES = [("Fit — offline, no weights, CPU or GPU (default)", "fit")] + [
    (f"{name} — needs its weights and SMPL-X, GPU ≥ {GPU_MEMORY_GB[name]} GB", name) for name in ENGINES if name != "fit"]
CAMERAS = ("auto", "motion", "front", "orbit")
SIZES = (128, 1024)
FPS_RANGE = (6, 60)
MAX_SECONDS = 10.0
# messages written for the user: shown as they are; anything else becomes a generic message

WORK_ROOT = Path(tempfile.mkdtemp(prefix="lhm-space-"))
atexit.register(shutil.rmtree, WORK_ROOT, ignore_errors=True)

_pipelines: dict[str, Pipeline] = {}
_pipelines_lock = threading.Lock()


def lenient(image: gr.Image) -> gr.Image:
    """``image`` (``type="filepath"``) handing undecodable uploads on to the pipeline, whose message says what is wrong.

    Plain ``gr.Image`` opens every upload with PIL first and answers a broken file with a bare "Error".
    Patched on the instance: a subclass would make gradio write an ``app.pyi`` stub next to this file.
    """
    strict = image.preprocess

    def preprocess(payload):
        try:
            return strict(payload)
        except (OSError, ValueError, SyntaxError):  # PIL's ways of saying "not an image"
            return payload.path

    image.preprocess = preprocess
    return image


def example_photos() -> list[Path]:
    """The images in ``examples/`` (sorted; none when the folder is missing)."""
    if not EXAMPLES_DIR.is_dir():
        return []
    return sorted(p for p in EXAMPLES_DIR.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def get_pipeline(engine: str) -> Pipeline:
    """The Pipeline for ``engine`` (a name of ``ENGINES``), loaded on first use and kept for later requests."""
    if engine not in ENGINES:
        raise InputError(f"Unknown engine '{engine}'; choose one of {', '.join(ENGINES)}.")
    with _pipelines_lock:  # two first requests must not load the same weights twice
        if engine not in _pipelines:
            _pipelines[engine] = Pipeline.from_pretrained(engine)
        return _pipelines[engine]


class MotionRequest(NamedTuple):
    """What to animate, as plain data (ZeroGPU pickles ``_work``'s arguments): the motion is loaded again for the
    avatar's own body there, so a preset's footwork fits it; ``frames`` is the checked length."""

    source: str
    fps: float
    seconds: float
    frames: int


def gpu_seconds(engine, photo, remove_background, motion, size, background, camera, out_dir, progress=None) -> int:
    """ZeroGPU time to reserve for one ``_work`` call: the engine's reconstruction plus the frames to render."""
    base = {"fit": 30, "LHM-MINI": 30, "LHM-500M": 40, "LHM-500M-HF": 40}.get(engine, 60)
    frames = 0 if motion is None else motion.frames
    return int(min(120, base + 10 + frames * 0.03 * (size / 512) ** 2))


def viewer_ply(avatar: lhm.Avatar, dst: Path) -> Path:
    """The avatar's T-pose as a 3DGS ``.ply`` turned upright for gradio's splat viewer (gsplat.js takes y as down)."""
    return save_ply(dst, avatar.tpose().detach(), y_down=True)


@contextmanager
def user_errors(stage: str):
    """Turn what the block raises into ``gr.Error``: the pipeline's own message, or a short generic one."""
    try:
        yield
    except gr.Error:
        raise
    except InputError as e:
        raise gr.Error(str(e), title="Cannot use this input", print_exception=False) from None
    except Exception:
        log.exception("failed while %s", stage)
        raise gr.Error(f"Something went wrong while {stage}. Please try again, or try another photo; "
                       "the details were logged on the server.", print_exception=False) from None


@spaces.GPU(duration=gpu_seconds)
def _work(engine: str, photo: str, remove_background: bool, motion: MotionRequest | None, size: int, background,
          camera: str,
          out_dir: Path, progress=None):
    """Reconstruct, save the 3D files and yield them, then render and yield the video.

    Yields ``(outputs, warnings)``; the video stage's failure is a warning, not an error, so the
    avatar already made is kept. On ZeroGPU this runs in a worker process that gets its arguments
    pickled: hence the engine's name (its Pipeline comes from the cache the fork inherited) and
    data, not UI calls, in return.
    """
    progress = progress or (lambda fraction, desc: None)
    pipe = get_pipeline(engine)
    with user_errors("making the avatar"):
        avatar = pipe.reconstruct(photo, remove_background=remove_background,
                                  progress=lambda f, d: progress(0.55 * f, d))
        progress(0.55, "saving the 3D files")
        files = save_outputs(out_dir, avatar)
    try:
        preview = viewer_ply(avatar, out_dir / "preview" / "tpose.ply")
    except Exception:  # the preview is a convenience: show the file as saved rather than lose the avatar
        log.exception("could not turn the .ply upright for the viewer")
        preview = files["tpose_ply"]
    log.info("%s avatar: %s", pipe.name, ", ".join(f"{k} {v:.1f} s" for k, v in avatar.info["timings"].items()))
    notes = list(avatar.info.get("warnings", []))
    downloads = [str(files[k]) for k in ("tpose_ply", "canonical_ply", "splat")]
    three_d = (str(files["input"]) if "input" in files else None, str(preview), str(files["turntable"]))
    yield (*three_d, None, downloads), notes
    if motion is None:
        return
    try:
        with user_errors("rendering the video"):
            clip = pipe.animate(avatar, motion.source, fps=motion.fps, duration=motion.seconds, size=size, camera=camera,
                                background=background,
                                progress=lambda f, d: progress(0.6 + 0.37 * f, d))
            progress(0.97, "encoding the video")
            video = str(save_video(out_dir / "animation.mp4", clip.rgb, fps=clip.fps))
    except gr.Error as e:
        yield (*three_d, None, downloads), [f"The video could not be made: {e.message} The 3D avatar is ready."]
        return
    yield (*three_d, video, downloads + [video]), []


def _run(photo, engine, remove_background, motion_name, motion_file, size, fps, seconds, background, camera,
         progress, animate: bool):
    """Check the request, then stream ``_work``'s outputs, showing its warnings; cleans its folder up after."""
    if not photo:
        raise gr.Error("Upload a photo of a person first (or pick an example).", title="No photo",
                       print_exception=False)
    out_dir = WORK_ROOT / uuid.uuid4().hex
    try:
        with user_errors("reading the options"):
            camera = camera or "auto"
            size = int(min(max(int(size), SIZES[0]), SIZES[1]))
            fps = float(min(max(float(fps), FPS_RANGE[0]), FPS_RANGE[1]))
            seconds = float(min(max(float(seconds), 0.1), MAX_SECONDS))
            background = parse_colour(background)
            # the motion is read before the photo so that a bad motion file fails in a second, not after the avatar
            motion = None
            if animate:
                source = motion_file or motion_name or "wave"
                checked = timed_motion(source, fps, seconds)
                check_camera(checked, camera)
                motion = MotionRequest(str(source), fps, seconds, len(checked))
        engine = engine or "fit"
        progress(0.0, "loading the engine")
        with user_errors(f"loading the {engine} engine"):
            get_pipeline(engine)  # here, in the server process, so that ZeroGPU workers inherit it
        for outputs, notes in _work(engine, photo, bool(remove_background), motion, size, background, camera, out_dir,
                                    progress):
            for note in notes:
                gr.Warning(note)
            yield outputs
    finally:
        # runs after the last yield's files were copied into gradio's cache (or on cancellation)
        shutil.rmtree(out_dir, ignore_errors=True)


def generate(photo, engine, remove_background, motion_name, motion_file, size, fps, seconds, background, camera,
             progress=gr.Progress()):
    """Photo -> processed input, T-pose .ply, turntable, video, downloads; the 3D results arrive before the video."""
    yield from _run(photo, engine, remove_background, motion_name, motion_file, size, fps, seconds, background,
                    camera, progress, animate=True)


def reconstruct(photo, engine, remove_background, progress=gr.Progress()):
    """Photo -> processed input, T-pose .ply, turntable, downloads (no video)."""
    for input_png, ply, turntable, _, downloads in _run(photo, engine, remove_background, None, None, SIZES[0],
                                                        FPS_RANGE[0], 1.0, None, "auto", progress, animate=False):
        yield input_png, ply, turntable, downloads


def build_demo() -> gr.Blocks:
    """The Blocks app (not launched, queue configured)."""
    motions = lhm.list_motions()
    photos = example_photos()
    with gr.Blocks(title="LHM avatar — one photo to an animated 3D Gaussian avatar",
                   delete_cache=(600, 3600)) as demo:
        gr.Markdown("# One photo → an animatable 3D Gaussian avatar\n"
                    "Upload a photo of one person (whole body, or from the waist up: the legs are then guessed), "
                    "pick a motion and press **Generate**. "
                    "The *Fit* engine needs no download and runs on CPU (about a minute); the LHM engines need "
                    "their weights and a GPU.")
        with gr.Row():
            with gr.Column(scale=1):
                photo = lenient(gr.Image(label="Photo of a person", type="filepath", elem_id="photo", height=360,
                                         sources=["upload", "clipboard", "webcam"]))
                if photos:
                    gr.Examples([[str(p)] for p in photos], inputs=[photo], label="Example photos",
                                examples_per_page=12)
                engine = gr.Dropdown(ENGINE_CHOICES, value="fit", label="Engine", elem_id="engine")
                remove_background = gr.Checkbox(True, label="Remove the background",
                                                info="Off: the photo must already be a cut-out with transparency.")
                with gr.Tab("Preset motion"):
                    motion_name = gr.Dropdown([(f"{m.display_name} ({m.duration:g} s)", m.name) for m in motions],
                                              value="wave", label="Motion", elem_id="motion")
                    previewed = [m for m in motions if m.preview]
                    gallery = gr.Gallery([(str(m.preview), m.display_name) for m in previewed],
                                         columns=5, height=260, allow_preview=False, show_label=False,
                                         interactive=False, elem_id="motion-gallery")
                with gr.Tab("Motion file"):
                    motion_file = gr.File(label="LHM smplx_params .zip, AMASS or lhm .npz, LHM .json frame",
                                          file_types=[".zip", ".npz", ".json"], type="filepath")
                with gr.Accordion("Options", open=False):
                    size = gr.Slider(*SIZES, value=512, step=32, label="Video size (pixels)", elem_id="size")
                    fps = gr.Slider(*FPS_RANGE, value=30, step=1, label="Frames per second", elem_id="fps")
                    seconds = gr.Slider(0.5, MAX_SECONDS, value=4.0, step=0.5, label="Length (seconds)",
                                        elem_id="seconds")
                    background = gr.ColorPicker("#ffffff", label="Background colour")
                    camera = gr.Radio(list(CAMERAS), value="auto", label="Camera",
                                      info="auto: the motion's camera if it has one, else in front")
                button = gr.Button("Generate", variant="primary", elem_id="generate")
            with gr.Column(scale=2):
                with gr.Row():
                    processed = gr.Image(label="Processed input (crop and mask)", type="filepath", height=300,
                                         elem_id="processed", interactive=False)
                    turntable = gr.Image(label="Turntable", type="filepath", height=300, interactive=False,
                                         elem_id="turntable")
                model3d = gr.Model3D(label="3D avatar (T-pose Gaussians; drag to orbit)", height=420,
                                     elem_id="model3d", interactive=False)
                video = gr.Video(label="Animation", elem_id="video", interactive=False, autoplay=True, loop=True)
                downloads = gr.File(label="Downloads: T-pose .ply, canonical .ply, .splat, .mp4", file_count="multiple",
                                    elem_id="downloads", interactive=False)

        def pick_motion(evt: gr.SelectData) -> str:
            return previewed[evt.index].name

        gallery.select(pick_motion, None, motion_name, api_visibility="private", queue=False)
        button.click(generate, [photo, engine, remove_background, motion_name, motion_file, size, fps, seconds,
                                background, camera], [processed, model3d, turntable, video, downloads],
                     api_name="generate", concurrency_id="work")
        hidden = gr.Button(visible=False)
        hidden.click(reconstruct, [photo, engine, remove_background], [processed, model3d, turntable, downloads],
                     api_name="reconstruct", concurrency_id="work")
    demo.queue(default_concurrency_limit=int(os.environ.get("LHM_APP_CONCURRENCY", "1")),
               max_size=int(os.environ.get("LHM_APP_QUEUE", "32")))
    return demo


demo = build_demo()

if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    demo.launch(allowed_paths=[str(WORK_ROOT)])
