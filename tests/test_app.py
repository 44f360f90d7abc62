"""The Space (app.py) end to end through gradio_client: a served app, real requests, real files back."""
from __future__ import annotations

import socket
import sys
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import app  # noqa: E402
import lhm.io  # noqa: E402

gradio_client = pytest.importorskip("gradio_client")

SIZE, FPS, SECONDS = 256, 12, 1.0


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(demo):
    """Launch ``demo`` on 127.0.0.1 in this process; returns its URL."""
    port = free_port()
    demo.launch(server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    return f"http://127.0.0.1:{port}/"


def person_photo() -> Path:
    """The first example photo (examples/ is part of the repository)."""
    photos = app.example_photos()
    assert photos, f"no example photos in {app.EXAMPLES_DIR}"
    return photos[0]


def generate_args(photo, motion="wave"):
    """Inputs of /generate in order, for a short small video."""
    return (gradio_client.handle_file(str(photo)), "fit", True, motion, None, SIZE, FPS, SECONDS, "#ffffff", "auto")


@pytest.fixture(scope="module")
def client():
    demo = app.build_demo()
    url = serve(demo)
    yield gradio_client.Client(url, verbose=False)
    demo.close()


def test_options_parsing():
    assert app.parse_colour("#ffffff") == (1.0, 1.0, 1.0)
    assert app.parse_colour("#f00") == (1.0, 0.0, 0.0)
    assert app.parse_colour("rgba(0, 127.5, 255, 1)") == (0.0, 0.5, 1.0)
    with pytest.raises(app.InputError, match="not a colour"):
        app.parse_colour("blue-ish")


def test_bad_uploads_give_clear_messages(client, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("this is a shopping list, not a photo")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((640, 384, 3), 255, np.uint8)).save(blank)
    for bad in (text, blank):
        with pytest.raises(gradio_client.exceptions.AppError) as caught:
            client.predict(*generate_args(bad), api_name="/generate")
        message = str(caught.value)
        assert message and "Something went wrong" not in message, f"{bad.name}: {message!r}"
        assert "Traceback" not in message


def test_bad_motion_file_fails_before_the_avatar(client, tmp_path):
    motion = tmp_path / "motion.zip"
    motion.write_bytes(b"not a zip")
    args = list(generate_args(person_photo()))
    args[4] = gradio_client.handle_file(str(motion))
    with pytest.raises(gradio_client.exceptions.AppError) as caught:
        client.predict(*args, api_name="/generate")
    assert "motion.zip" in str(caught.value) or "zip" in str(caught.value).lower()


def test_missing_weights_give_the_loaders_message(client):
    from lhm.models.weights import CheckpointNotFoundError, resolve_checkpoint

    try:
        resolve_checkpoint("LHM-MINI")
        pytest.skip("LHM-MINI weights are on this machine")
    except CheckpointNotFoundError:
        pass
    args = list(generate_args(person_photo()))
    args[1] = "LHM-MINI"
    with pytest.raises(gradio_client.exceptions.AppError, match="LHM-MINI"):
        client.predict(*args, api_name="/generate")


def test_generate_end_to_end(client):
    """Runs after the bad requests on the same server: they must not have broken it."""
    processed, ply, turntable, video, downloads = client.predict(*generate_args(person_photo()), api_name="/generate")
    video = video["video"] if isinstance(video, dict) else video
    assert Path(processed).is_file() and Path(turntable).is_file()
    frames = imageio_ffmpeg.read_frames(video)
    meta = next(frames)
    assert tuple(meta["size"]) == (SIZE, SIZE)
    assert sum(1 for _ in frames) == round(FPS * SECONDS)
    expected = app.get_pipeline("fit").engine.num_gaussians
    names = sorted(Path(p).name for p in downloads)
    assert names == ["animation.mp4", "avatar.splat", "canonical.ply", "tpose.ply"]
    for kind in ("tpose.ply", "canonical.ply"):
        path = next(p for p in downloads if p.endswith(kind))
        assert len(lhm.io.load_ply(path).means) == expected
    assert_upright_copy(ply, next(p for p in downloads if p.endswith("tpose.ply")))
    # the per-request folder is gone once the files are in gradio's cache
    assert not any(app.WORK_ROOT.iterdir())


def assert_upright_copy(viewer: str, tpose: str) -> None:
    """``viewer`` holds the Gaussians of ``tpose`` turned half a turn about x, as gradio's y-down splat viewer needs."""
    shown, saved = lhm.io.load_ply(viewer), lhm.io.load_ply(tpose)
    w, x, y, z = saved.quats.unbind(-1)
    assert torch.equal(shown.means, saved.means * torch.tensor([1.0, -1.0, -1.0]))
    torch.testing.assert_close(shown.quats, torch.stack([-x, w, -z, y], dim=-1), atol=3e-7, rtol=0)
    for name in ("scales", "opacities", "colors"):
        assert torch.equal(getattr(shown, name), getattr(saved, name)), name


def test_video_failure_keeps_the_avatar(client, monkeypatch):
    def broken_animate(*args, **kwargs):
        raise RuntimeError("renderer fell over")

    monkeypatch.setattr(app.get_pipeline("fit"), "animate", broken_animate)
    _, ply, _, video, downloads = client.predict(*generate_args(person_photo()), api_name="/generate")
    assert not video
    assert sorted(Path(p).name for p in downloads) == ["avatar.splat", "canonical.ply", "tpose.ply"]
    assert_upright_copy(ply, next(p for p in downloads if p.endswith("tpose.ply")))


def test_reconstruct_endpoint(client):
    processed, _, turntable, downloads = client.predict(gradio_client.handle_file(str(person_photo())), "fit", True,
                                                        api_name="/reconstruct")
    assert Path(processed).is_file() and Path(turntable).is_file()
    assert sorted(Path(p).name for p in downloads) == ["avatar.splat", "canonical.ply", "tpose.ply"]


def test_impossible_camera_fails_before_the_avatar(monkeypatch):
    monkeypatch.setattr(app, "_work", lambda *args: pytest.fail("the avatar was made before the options were checked"))
    run = app._run(str(person_photo()), "fit", True, "wave", None, SIZE, FPS, SECONDS, "#ffffff", "motion",
                   lambda *args, **kwargs: None, animate=True)
    with pytest.raises(app.gr.Error, match="own camera"):  # was "The video could not be made: Something went wrong"
        next(run)
