"""The public API end to end on an example photo: Pipeline, Animation, save_outputs, and the ``lhm`` CLI."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import torch
from PIL import Image

import lhm
from lhm.cli import main
from lhm.io import load_ply, load_splat
from lhm.pipeline import timed_motion

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "anna_stripes.jpg"
SMALL = dict(num_gaussians=6000, steps=(6, 3, 0))  # a light Fit engine: the API is under test, not quality


@pytest.fixture(scope="module")
def pipe() -> lhm.Pipeline:
    return lhm.Pipeline.from_pretrained("fit", device="cpu", **SMALL)


@pytest.fixture(scope="module")
def avatar(pipe) -> lhm.Avatar:
    seen = []
    avatar = pipe.reconstruct(EXAMPLE, progress=lambda fraction, desc: seen.append((fraction, desc)))
    avatar.info["progress"] = seen
    return avatar


def test_reconstruct_returns_an_avatar_with_its_story(avatar):
    assert len(avatar) == 6000 and avatar.info["engine"] == "fit"
    person = avatar.info["person"]
    assert isinstance(person, lhm.PersonImage) and person.fit.iou > 0.8
    assert set(avatar.info["timings"]) == {"prepare", "reconstruct"}
    fractions = [f for f, _ in avatar.info["progress"]]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and len(fractions) > 5
    # a prepared person is reused as is
    assert isinstance(avatar.info["warnings"], list)


def test_animate_renders_every_frame_at_the_asked_size(pipe, avatar):
    clip = pipe.animate(avatar, "wave", size=(96, 128), fps=10, duration=0.5, background=(0.0, 1.0, 0.0))
    assert clip.rgb.shape == (5, 128, 96, 3) and clip.rgb.dtype == torch.uint8
    assert clip.alpha.shape == (5, 128, 96) and 0 <= float(clip.alpha.min()) and float(clip.alpha.max()) <= 1
    assert clip.fps == 10 and len(clip.camera) == 5
    corner = clip.rgb[:, 0, 0].float()
    assert torch.allclose(corner, torch.tensor([0.0, 255.0, 0.0]).expand_as(corner), atol=1)  # background shows
    assert float(clip.alpha.mean()) > 0.05  # the avatar is in view


def test_timed_motion_trims_loops_and_resamples():
    wave = lhm.load_motion("wave")
    assert len(timed_motion(wave, duration=1.0)) == round(wave.fps)
    assert abs(timed_motion(wave, duration=2 * wave.duration).duration - 2 * wave.duration) < 0.1
    assert timed_motion("wave", fps=15).fps == 15


def test_save_outputs_writes_files_other_readers_open(tmp_path, pipe, avatar):
    clip = pipe.animate(avatar, "idle", size=64, duration=0.2)
    paths = lhm.save_outputs(tmp_path, avatar, clip, turntable_views=4, turntable_size=64)
    assert set(paths) == {"tpose_ply", "canonical_ply", "splat", "turntable", "video", "input"}
    assert len(load_ply(paths["tpose_ply"]).means) == len(avatar) == len(load_splat(paths["splat"]).means)
    assert iio.imread(paths["video"]).shape[0] == len(clip)
    rgba = np.asarray(Image.open(paths["input"]))
    assert rgba.shape[2] == 4 and rgba[..., 3].max() == 255 and rgba[..., 3].min() == 0


def test_bad_input_is_an_input_error(pipe, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(lhm.InputError, match="image"):
        pipe.reconstruct(text)
    with pytest.raises(lhm.InputError, match="transparen"):
        pipe.reconstruct(EXAMPLE, remove_background=False)
    with pytest.raises(lhm.MotionError):
        pipe.animate(pipe.reconstruct(EXAMPLE), "no-such-motion")


def test_cli_avatar_writes_everything(tmp_path, capsys, monkeypatch):
    import lhm.pipeline

    light = lhm.Pipeline.from_pretrained
    monkeypatch.setattr(lhm.pipeline.Pipeline, "from_pretrained",
                        classmethod(lambda cls, name, **kw: light(name, device="cpu", **SMALL)))
    code = main(["avatar", str(EXAMPLE), "--motion", "idle", "--duration", "0.3", "--size", "64",
                 "--out", str(tmp_path / "out")])
    out = capsys.readouterr().out
    assert code == 0 and "animation.mp4" in out and "total" in out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {
        "animation.mp4", "tpose.ply", "canonical.ply", "avatar.splat", "turntable.webp", "input.png"}


def test_cli_exit_codes_and_messages(tmp_path, capsys):
    bad = tmp_path / "photo.jpg"
    bad.write_bytes(b"\xff\xd8 truncated")
    assert main(["avatar", str(bad), "--out", str(tmp_path)]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["avatar", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)]) == 2
    assert "missing.jpg" in capsys.readouterr().err
    assert main(["avatar", str(EXAMPLE), "--engine", "LHM-MINI", "--out", str(tmp_path)]) == 2
    assert "LHM-MINI" in capsys.readouterr().err  # weights missing offline: where to get them
    assert main(["motions"]) == 0 and "wave" in capsys.readouterr().out


@pytest.mark.parametrize("options, words", [
    ({"size": 7}, "16 to 4096"), ({"size": 5000}, "16 to 4096"), ({"fps": 0}, "above 0"),
    ({"fps": 1000}, "up to 240"), ({"duration": 0}, "above 0"), ({"duration": 1000}, "3000"),
    ({"camera": "motion"}, "own camera"), ({"camera": "sideways"}, "Unknown camera")])
def test_impossible_animation_options_are_input_errors(pipe, avatar, options, words):
    # were: a silent 7x7 video, an unbounded render, a one-frame video, ValueError as an internal error
    with pytest.raises(lhm.InputError, match=words):
        pipe.animate(avatar, "wave", **{"duration": 0.2, **options})


def test_a_camera_batch_of_the_wrong_length_is_an_input_error(pipe, avatar):
    cams = pipe.animate(avatar, "wave", size=32, duration=0.2).camera  # 6 frames
    with pytest.raises(lhm.InputError, match="one camera per frame"):
        pipe.animate(avatar, "wave", size=32, duration=0.5, camera=cams)  # 15 frames, was an IndexError


def test_save_outputs_leaves_the_folder_as_it_was_on_error(tmp_path, pipe, avatar, monkeypatch):
    import lhm.io

    (tmp_path / "tpose.ply").write_text("last run's")

    def broken(*args, **kwargs):
        raise KeyboardInterrupt  # Ctrl-C while the turntable is written

    monkeypatch.setattr(lhm.io, "save_preview", broken)
    with pytest.raises(KeyboardInterrupt):
        lhm.save_outputs(tmp_path, avatar, turntable_views=2, turntable_size=32)
    assert [p.name for p in tmp_path.iterdir()] == ["tpose.ply"] and (tmp_path / "tpose.ply").read_text() == "last run's"


def test_unknown_engine_name_says_what_to_use():
    with pytest.raises(lhm.InputError, match="Unknown engine 'nonsense'.*LHM-500M"):
        lhm.Pipeline.from_pretrained("nonsense")


def test_cli_checks_options_before_the_work(tmp_path, capsys, monkeypatch):
    import lhm.pipeline

    def never(cls, *args, **kwargs):
        raise AssertionError("the engine loaded before the options were checked")

    monkeypatch.setattr(lhm.pipeline.Pipeline, "from_pretrained", classmethod(never))
    afile = tmp_path / "file"
    afile.write_text("")
    for options, words in ((["--size", "7"], "16 to 4096"), (["--fps", "0"], "above 0"),
                           (["--duration", "0"], "above 0"), (["--motion", "wavee"], "wavee"),
                           (["--camera", "motion"], "own camera"), (["--out", str(afile / "sub")], "is a file")):
        code = main(["avatar", str(EXAMPLE), "--out", str(tmp_path / "out"), *options])
        err = capsys.readouterr().err
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (options, err)
    assert not (tmp_path / "out").exists()


def test_cli_interrupt_exits_130_without_a_traceback(capsys, monkeypatch):
    import lhm.pipeline

    def interrupted(cls, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(lhm.pipeline.Pipeline, "from_pretrained", classmethod(interrupted))
    assert main(["avatar", str(EXAMPLE)]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"


def test_a_renamed_npy_motion_is_a_motion_error(tmp_path):
    fake = tmp_path / "motion.npz"
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(fake)
    with pytest.raises(lhm.MotionError, match="not a zip archive"):  # was a TypeError: an internal error
        timed_motion(fake)


def test_videos_beyond_the_memory_bound_are_refused_before_rendering(pipe, avatar):
    from lhm.pipeline import MAX_FRAMES_BYTES, check_frames_memory

    check_frames_memory(300, 1024, 1024)  # 10 s at 30 fps, 1024 px: fine
    with pytest.raises(lhm.InputError, match="GB of memory"):
        pipe.animate(avatar, "wave", size=4096, fps=60, duration=20)
    assert MAX_FRAMES_BYTES < 1200 * 4096 * 4096 * 7
