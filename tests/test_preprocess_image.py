"""Photo loading: every source type, every odd format, and every kind of bad input."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from lhm.errors import InputError
from lhm.preprocess.image import load_image

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)


def quadrants(width: int = 200, height: int = 300) -> Image.Image:
    """Top-left red, top-right green, bottom blue: orientation mistakes show as wrong corner colours."""
    arr = np.zeros((height, width, 3), np.uint8)
    arr[: height // 2, : width // 2] = RED
    arr[: height // 2, width // 2:] = GREEN
    arr[height // 2:] = BLUE
    return Image.fromarray(arr)


def close(pixel, colour, tol: int = 12) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, int) - colour) <= tol))


def test_exif_orientation_6_is_applied(tmp_path):
    path = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: display rotated 90 degrees clockwise
    quadrants(200, 300).save(path, exif=exif, quality=95)
    out = load_image(path)
    assert out.rgb.shape == (200, 300, 3) and out.rgb.dtype == np.uint8 and out.alpha is None
    assert close(out.rgb[5, -5], RED)  # stored top-left ends up top-right
    assert close(out.rgb[-5, -5], GREEN)
    assert close(out.rgb[5, 5], BLUE)
    assert not out.warnings


@pytest.mark.parametrize("mode", ["L", "LA", "I;16", "I", "1"])
def test_grayscale_modes(mode):
    values = np.tile(np.linspace(0, 1, 256, dtype=np.float32), (160, 1))
    scale = {"I;16": 65535, "I": 65535, "1": 1}.get(mode, 255)
    dtype = {"I;16": np.uint16, "I": np.int32, "1": bool}.get(mode, np.uint8)
    gray = Image.fromarray((values * scale).round().astype(dtype) if mode != "1" else values > 0.5)
    if mode == "LA":
        gray = Image.merge("LA", (gray, Image.new("L", gray.size, 255)))
    out = load_image(gray)
    assert out.rgb.shape == (160, 256, 3) and out.alpha is None
    expected = np.round(values[0] * 255) if mode != "1" else (values[0] > 0.5) * 255
    assert np.abs(out.rgb[0, :, 0].astype(int) - expected).max() <= 1
    assert np.array_equal(out.rgb[..., 0], out.rgb[..., 2])


def test_16bit_png_file(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.full((150, 200), 40000, np.uint16)).save(path)
    out = load_image(path)
    assert out.rgb.shape == (150, 200, 3) and np.all(out.rgb == round(40000 / 257))


def test_cmyk_jpeg(tmp_path):
    path = tmp_path / "print.jpg"
    quadrants().convert("CMYK").save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert close(out.rgb[5, 5], RED, 20) and close(out.rgb[5, -5], GREEN, 20) and close(out.rgb[-5, 5], BLUE, 20)


def test_palette_png_with_transparency_gives_alpha(tmp_path):
    path = tmp_path / "palette.png"
    pal = Image.new("P", (200, 160), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.paste(1, (50, 40, 150, 120))
    pal.save(path, transparency=0)
    out = load_image(path)
    assert out.alpha is not None and out.alpha.dtype == np.float32
    assert out.alpha[0, 0] == 0.0 and out.alpha[80, 100] == 1.0
    assert close(out.rgb[80, 100], RED, 0)


def test_rgba_alpha_and_opaque_alpha_dropped():
    arr = np.zeros((200, 150, 4), np.uint8)
    arr[..., 0] = 200
    arr[..., 3] = 255
    assert load_image(Image.fromarray(arr, "RGBA")).alpha is None
    arr[:100, :, 3] = 0
    out = load_image(Image.fromarray(arr, "RGBA"))
    assert out.alpha is not None and out.alpha[0, 0] == 0.0 and out.alpha[-1, -1] == 1.0
    assert out.rgb[-1, -1, 0] == 200


@pytest.mark.parametrize("fmt", ["GIF", "WEBP"])
def test_animation_keeps_first_frame_with_warning(tmp_path, fmt):
    path = tmp_path / f"anim.{fmt.lower()}"
    frames = [Image.new("RGB", (160, 160), colour) for colour in (RED, GREEN, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0, **(
        {"lossless": True} if fmt == "WEBP" else {}))
    out = load_image(path)
    assert close(out.rgb[80, 80], RED, 4)
    assert len(out.warnings) == 1 and "3 frames" in out.warnings[0] and "first frame" in out.warnings[0]


def test_huge_image_is_downscaled_with_warning(tmp_path):
    arr = np.zeros((200, 9000, 3), np.uint8)
    arr[:, 4500:] = GREEN
    path = tmp_path / "wide.png"
    Image.fromarray(arr).save(path)
    out = load_image(path)
    assert out.rgb.shape == (46, 2048, 3)
    assert close(out.rgb[20, 10], (0, 0, 0)) and close(out.rgb[20, -10], GREEN)
    assert len(out.warnings) == 1 and "9000x200" in out.warnings[0] and "2048x46" in out.warnings[0]


def test_big_jpeg_decodes_reduced(tmp_path):
    path = tmp_path / "big.jpg"
    quadrants(4000, 3000).save(path, quality=90)
    out = load_image(path, max_side=1000)
    assert out.rgb.shape == (750, 1000, 3) and close(out.rgb[5, 5], RED) and close(out.rgb[-5, 5], BLUE)
    assert "4000x3000" in out.warnings[0]


def _png_claiming_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header claims width x height: a decompression bomb's signature."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    ihdr = struct.pack(">II", width, height) + bytes(data[24:29])
    data[16:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return bytes(data)


@pytest.mark.parametrize("side", [12000, 30000])
def test_decompression_bomb_is_an_input_error(side):
    with pytest.raises(InputError, match="too large|megapixels") as err:
        load_image(_png_claiming_size(side, side))
    assert "downscale" in str(err.value)


def test_arrays_of_every_kind():
    base = np.zeros((150, 130, 3), np.uint8)
    base[:, :, 0] = 255
    cases = [base, base.astype(np.float32) / 255, base.astype(np.uint16) * 257, base.astype(bool),
             torch.from_numpy(base.astype(np.float32) / 255), torch.from_numpy(base.astype(np.float32) / 255)[None],
             torch.from_numpy(base.astype(np.float32) / 255).permute(2, 0, 1)]
    for case in cases:
        out = load_image(case)
        assert out.rgb.shape == (150, 130, 3) and out.rgb.dtype == np.uint8 and out.alpha is None
        assert close(out.rgb[7, 7], RED, 0)
    gray = load_image(np.full((150, 130), 0.5, np.float32))
    assert np.all(gray.rgb == 128)
    assert np.all(load_image(np.full((150, 130, 1), 7, np.uint8)).rgb == 7)
    rgba = np.concatenate([base, np.zeros((150, 130, 1), np.uint8)], axis=2)
    rgba[:75, :, 3] = 255
    out = load_image(rgba)
    assert out.alpha is not None and out.alpha[0, 0] == 1.0 and out.alpha[-1, 0] == 0.0


def test_comfyui_batch_uses_first_image_with_warning():
    batch = torch.zeros(2, 140, 160, 3)
    batch[0, ..., 1] = 1.0
    out = load_image(batch)
    assert close(out.rgb[0, 0], GREEN, 0) and "batch of 2" in out.warnings[0]


def test_large_array_is_downscaled():
    out = load_image(np.zeros((3000, 1500, 3), np.uint8), max_side=1000)
    assert out.rgb.shape == (1000, 500, 3) and "downscaled" in out.warnings[0]


def test_too_small_photo(tmp_path):
    path = tmp_path / "tiny.png"
    Image.new("RGB", (90, 60)).save(path)
    with pytest.raises(InputError) as err:
        load_image(path)
    assert "is 90x60 px; LHM needs at least 128 px on the short side — use a larger photo" in str(err.value)
    with pytest.raises(InputError, match="90x60 px"):
        load_image(np.zeros((60, 90, 3), np.uint8))


def test_missing_empty_and_non_image_files(tmp_path):
    with pytest.raises(InputError, match="not found.*check the path"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(InputError, match="not a file"):
        load_image(tmp_path)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(InputError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "notes.png").write_text("this is a text file, not a picture\n")
    with pytest.raises(InputError, match="notes.png is not a readable image.*JPEG, PNG"):
        load_image(str(tmp_path / "notes.png"))
    with pytest.raises(InputError, match="empty"):
        load_image(b"")
    with pytest.raises(InputError, match="not a readable image"):
        load_image(b"\x00\x01garbage" * 100)


def test_truncated_and_corrupt_files(tmp_path):
    buf = io.BytesIO()
    quadrants(400, 400).save(buf, "JPEG", quality=90)
    whole = buf.getvalue()
    (tmp_path / "cut.jpg").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(InputError, match="cut.jpg could not be decoded.*corrupt or truncated"):
        load_image(tmp_path / "cut.jpg")
    buf = io.BytesIO()
    quadrants(400, 400).save(buf, "PNG")
    png = bytearray(buf.getvalue())
    png[60:200] = b"\xff" * 140  # scribble over the compressed pixels
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(bytes(png))


def test_bad_arrays():
    with pytest.raises(InputError, match="empty"):
        load_image(np.zeros((0, 0, 3), np.uint8))
    with pytest.raises(InputError, match="empty"):
        load_image(torch.zeros(1, 0, 200, 3))
    with pytest.raises(InputError, match="NaN"):
        load_image(np.full((200, 200, 3), np.nan, np.float32))
    with pytest.raises(InputError, match=r"\[0, 1\].*255"):
        load_image(np.full((200, 200, 3), 200.0, np.float32))
    with pytest.raises(InputError, match="shape"):
        load_image(np.zeros((200, 200, 7), np.uint8))
    with pytest.raises(InputError, match="file path, bytes"):
        load_image([[0, 1], [2, 3]])
