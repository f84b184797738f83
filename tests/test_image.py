"""Image decoding, Darknet's resize/letterbox (bit-exact against the C dumps), drawing and saving."""

from __future__ import annotations

import json
import os
import shutil
import struct
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pydarknet.errors import DarknetError
from pydarknet.image import (
    class_color_bgr,
    draw_detections,
    image_from_array,
    letterbox_geometry,
    letterbox_image,
    load_image,
    resize_image,
    resize_plain,
    save_image,
)

FIXTURES = Path(__file__).parent / "fixtures"
DATA = Path(__file__).parent.parent / "data"
INFER_DIRS = sorted(FIXTURES.glob("mini_*/infer_*"))
F32 = np.float32


def stb_image(stem: str) -> np.ndarray:
    return image_from_array(np.load(FIXTURES / "images" / f"{stem}_stb_hwc_uint8.npz")["image"])


def c_resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Line-by-line float32 transcription of Darknet's resize_image, for small images.

    The one deviation is the documented guard for a target of 1 (scale 0 instead of Darknet's x/0).
    """
    c, old_h, old_w = im.shape
    part = np.zeros((c, old_h, w), F32)
    resized = np.zeros((c, h, w), F32)
    w_scale = F32(old_w - 1) / F32(w - 1) if w > 1 else F32(0)
    h_scale = F32(old_h - 1) / F32(h - 1) if h > 1 else F32(0)
    one = F32(1)
    for k in range(c):
        for r in range(old_h):
            for col in range(w):
                if col == w - 1 or old_w == 1:
                    val = im[k, r, old_w - 1]
                else:
                    sx = F32(col) * w_scale
                    ix = int(sx)
                    dx = sx - F32(ix)
                    val = (one - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
                part[k, r, col] = val
    for k in range(c):
        for r in range(h):
            sy = F32(r) * h_scale
            iy = int(sy)
            dy = sy - F32(iy)
            for col in range(w):
                resized[k, r, col] = (one - dy) * part[k, iy, col]
            if r == h - 1 or old_h == 1:
                continue
            for col in range(w):
                resized[k, r, col] += dy * part[k, iy + 1, col]
    return resized


# --- parity with Darknet's dumps ---------------------------------------------------------------

@pytest.mark.parametrize("infer_dir", INFER_DIRS, ids=lambda d: f"{d.parent.name}/{d.name}")
def test_letterbox_equals_darknet_input_bit_for_bit(infer_dir):
    meta = json.loads((infer_dir / "layers.json").read_text())
    image = stb_image(Path(meta["image"]).stem)
    assert image.shape == (3, meta["image_h"], meta["image_w"])
    ours = letterbox_image(image, meta["net_w"], meta["net_h"])
    # Exact: the C build has no FMA (x86-64 baseline), every product and sum is rounded to float32 as
    # here. A single-rounding (FMA-like) variant differs from these dumps by 1.2e-7 on 560-9690 values.
    np.testing.assert_array_equal(ours, np.load(infer_dir / "input.npy"))


def test_every_fixture_dir_is_covered():
    assert {d.parent.name for d in INFER_DIRS} == {"mini_voc", "mini_tiny", "mini_9k", "mini_cls"}
    assert len(INFER_DIRS) == 11


# --- resize_image ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(old_w=st.integers(1, 9), old_h=st.integers(1, 9), w=st.integers(1, 12), h=st.integers(1, 12),
       seed=st.integers(0, 2**32 - 1))
def test_resize_equals_c_transcription(old_w, old_h, w, h, seed):
    im = np.random.default_rng(seed).random((2, old_h, old_w), dtype=F32)
    np.testing.assert_array_equal(resize_image(im, w, h), c_resize_image(im, w, h))


@settings(max_examples=200, deadline=None)
@given(old_w=st.integers(1, 64), old_h=st.integers(1, 64), w=st.integers(1, 64), h=st.integers(1, 64),
       value=st.floats(0, 1, width=32, allow_subnormal=False))
def test_resize_of_constant_stays_constant(old_w, old_h, w, h, value):
    out = resize_image(np.full((3, old_h, old_w), value, F32), w, h)
    assert out.shape == (3, h, w)
    # Each of the two lerps rounds (1-d), two products and a sum: a few float32 ulps at most (a relative
    # bound, hence no subnormals; real pixel values are 0 or >= 1/65535).
    np.testing.assert_allclose(out[:, :-1], value, rtol=1e-6, atol=0)
    # Darknet quirk: the last row only takes (1-dy)*part[iy]; it is constant only when the float32
    # position (h-1)*h_scale lands exactly on old_h-1 (dy == 0), else it is dimmed by 1-dy.
    last = F32(h - 1) * (F32(old_h - 1) / F32(h - 1)) if h > 1 else F32(0)
    if h == 1 or old_h == 1 or last == old_h - 1:
        np.testing.assert_allclose(out[:, -1], value, rtol=1e-6, atol=0)


def test_last_row_darkens_like_darknet():
    # 14 -> 12 rows: 11 * fl(13/11) = 12.999999 < 13, so iy = 12 and dy ~ 1: Darknet's last row is
    # ~1e-6 of the image, not the last source row. Columns are unaffected (the last column copies).
    im = np.ones((1, 14, 14), F32)
    out = resize_image(im, 12, 12)
    assert out[0, -1].max() < 1e-5
    assert np.all(out[0, :-1] > 1 - 1e-6)
    np.testing.assert_array_equal(out, c_resize_image(im, 12, 12))


def test_resize_one_pixel_sources_and_upscaling():
    rng = np.random.default_rng(1)
    pixel = rng.random((3, 1, 1), dtype=F32)
    np.testing.assert_array_equal(resize_image(pixel, 5, 4), np.broadcast_to(pixel, (3, 4, 5)))
    column = rng.random((3, 6, 1), dtype=F32)  # 1 wide: every output column copies it
    out = resize_image(column, 7, 6)
    np.testing.assert_array_equal(out, np.broadcast_to(column, (3, 6, 7)))
    row = rng.random((3, 1, 6), dtype=F32)  # 1 high: every output row equals the resized row
    out = resize_image(row, 11, 5)
    np.testing.assert_array_equal(out, np.broadcast_to(out[:, :1], (3, 5, 11)))
    np.testing.assert_array_equal(out, c_resize_image(row, 11, 5))
    small = rng.random((3, 4, 5), dtype=F32)
    up = resize_image(small, 40, 31)
    np.testing.assert_array_equal(up, c_resize_image(small, 40, 31))
    # Align-corners: the four corners of an upscale are the source corners.
    corners = (slice(None), [0, 0, -1, -1], [0, -1, 0, -1])
    np.testing.assert_array_equal(up[corners], small[corners])
    np.testing.assert_array_equal(resize_image(small, 5, 4), small)  # same size: identity


def test_resize_to_one_pixel_is_sane():
    # Darknet divides by (w-1) = 0 here; the guard uses the last column (c == w-1) and the first row.
    im = np.random.default_rng(2).random((3, 5, 6), dtype=F32)
    np.testing.assert_array_equal(resize_image(im, 1, 1), im[:, :1, -1:])
    np.testing.assert_array_equal(resize_image(im, 6, 1), im[:, :1, :])
    np.testing.assert_array_equal(resize_image(im, 1, 5), im[:, :, -1:])


def test_resize_plain_is_darknet_resize():
    im = stb_image("person")
    out = resize_plain(im, 96, 64)
    assert out.shape == (3, 64, 96) and out.dtype == F32
    np.testing.assert_array_equal(out, resize_image(im, 96, 64))


# --- letterbox ---------------------------------------------------------------------------------

def test_letterbox_geometry_matches_readme_rule():
    assert letterbox_geometry(768, 576, 416, 416) == (416, 312)
    assert letterbox_geometry(576, 768, 416, 416) == (312, 416)
    assert letterbox_geometry(773, 512, 32, 48) == (32, 21)
    assert letterbox_geometry(100, 100, 416, 416) == (416, 416)


@settings(max_examples=200, deadline=None)
@given(img_w=st.integers(1, 80), img_h=st.integers(1, 80), net_w=st.integers(1, 64), net_h=st.integers(1, 64))
def test_letterbox_shape_and_canvas(img_w, img_h, net_w, net_h):
    out = letterbox_image(np.zeros((3, img_h, img_w), F32), net_w, net_h)
    assert out.shape == (3, net_h, net_w) and out.dtype == F32
    new_w, new_h = letterbox_geometry(img_w, img_h, net_w, net_h)
    assert (new_w == net_w and new_h <= net_h) or (new_h == net_h and new_w <= net_w)
    dx, dy = (net_w - new_w) // 2, (net_h - new_h) // 2
    inside = np.zeros(out.shape, bool)
    inside[:, dy:dy + new_h, dx:dx + new_w] = True
    assert np.all(out[inside] == 0) and np.all(out[~inside] == F32(0.5))


def test_large_image_letterboxes_in_bounded_memory():
    im = np.empty((3, 6000, 6000), F32)
    im[:] = np.linspace(0, 1, 6000, dtype=F32)  # varies along x only
    tracemalloc.start()
    try:
        out = letterbox_image(im, 416, 416)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Measured ~8.4 MB (output 2 MB + gathered rows); a full-height horizontal pass would be 30 MB per
    # channel and a float64 copy of the input 864 MB.
    assert peak < 16 * 2**20
    assert out.shape == (3, 416, 416)
    # Rows differ only by the vertical lerp's rounding ((1-dy)*v + dy*v); the last row is the quirk.
    np.testing.assert_allclose(out[:, :-1], np.broadcast_to(out[:, :1], (3, 415, 416)), rtol=1e-6, atol=0)


# --- decoding ----------------------------------------------------------------------------------

def test_load_dog_matches_stb_within_decoder_differences():
    ours = load_image(DATA / "dog.jpg")
    assert ours.shape == (3, 576, 768) and ours.dtype == F32 and ours.flags.c_contiguous
    assert 0 <= ours.min() and ours.max() <= 1
    np.testing.assert_array_equal(ours * F32(255), np.round(ours * F32(255)))  # exact byte / 255
    # libjpeg(-turbo) vs stb_image IDCT/upsampling: measured mean 0.096 levels, max 3, ~7% of values
    # differ. 2 levels mean is loose enough for other libjpeg builds yet catches a channel swap or shift.
    diff = np.abs(ours - stb_image("dog"))
    assert diff.mean() < 2 / 255


def test_non_ascii_path(tmp_path):
    path = tmp_path / "chien_é_犬.jpg"
    shutil.copy(DATA / "dog.jpg", path)
    np.testing.assert_array_equal(load_image(path), load_image(DATA / "dog.jpg"))


def test_exif_orientation_is_ignored(tmp_path):
    bgr = np.zeros((20, 40, 3), np.uint8)
    bgr[:, :20] = (0, 0, 255)
    jpeg = cv2.imencode(".jpg", bgr)[1].tobytes()
    # APP1 Exif, big-endian TIFF, one IFD entry: Orientation (0x0112) SHORT = 6 (rotate 90 CW).
    tiff = b"MM\x00*" + struct.pack(">I", 8) + struct.pack(">HHHIHHI", 1, 0x0112, 3, 1, 6, 0, 0)
    app1 = b"Exif\x00\x00" + tiff
    path = tmp_path / "rotated.jpg"
    path.write_bytes(jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + jpeg[2:])
    im = load_image(path)
    assert im.shape == (3, 20, 40)
    assert im[0, 10, 5] > 0.9 and im[0, 10, 35] < 0.1  # red still on the left


def test_grey_rgba_and_16bit_png(tmp_path):
    rng = np.random.default_rng(3)
    grey = rng.integers(0, 256, (7, 9), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "grey.png"), grey)
    im = load_image(tmp_path / "grey.png")
    assert im.shape == (3, 7, 9)
    for c in range(3):
        np.testing.assert_array_equal(im[c], grey.astype(F32) / F32(255))

    bgra = rng.integers(0, 256, (5, 6, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    im = load_image(tmp_path / "rgba.png")
    np.testing.assert_array_equal(im, bgra[:, :, 2::-1].transpose(2, 0, 1).astype(F32) / F32(255))

    deep = rng.integers(0, 65536, (4, 3, 3), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    im = load_image(tmp_path / "deep.png")
    np.testing.assert_array_equal(im, deep[:, :, ::-1].transpose(2, 0, 1).astype(F32) / F32(65535))


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    (tmp_path / "empty.jpg").write_bytes(b"")
    data = (DATA / "dog.jpg").read_bytes()
    (tmp_path / "truncated.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "noise.jpg").write_bytes(np.random.default_rng(4).bytes(5000))
    (tmp_path / "folder.jpg").mkdir()
    return {name: tmp_path / name for name in
            ("missing.jpg", "empty.jpg", "truncated.jpg", "noise.jpg", "folder.jpg")}


@pytest.mark.parametrize("name", ["missing.jpg", "empty.jpg", "truncated.jpg", "noise.jpg", "folder.jpg"])
def test_bad_inputs_raise_darknet_error_naming_the_file(tmp_path, name):
    path = _bad_inputs(tmp_path)[name]
    with pytest.raises(DarknetError, match="cannot read image") as err:
        load_image(path)
    assert str(err.value).startswith(f"{path}: ")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
def test_device_is_rejected_without_reading():
    with pytest.raises(DarknetError, match="not a regular file"):
        load_image("/dev/zero")


def test_image_from_array():
    hwc = np.random.default_rng(5).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    chw = image_from_array(hwc)
    assert chw.shape == (3, 4, 5) and chw.dtype == F32
    np.testing.assert_array_equal(chw, hwc.transpose(2, 0, 1) / F32(255))
    np.testing.assert_array_equal(image_from_array(chw.astype(np.float64)), chw)
    assert image_from_array(hwc[:, :, 0]).shape == (3, 4, 5)
    for bad in (np.zeros((3, 4, 5), np.uint8), np.zeros((4, 5, 3), F32), np.zeros((3, 0, 5), F32),
                np.zeros((4, 5, 3), np.int32)):
        with pytest.raises(DarknetError):
            image_from_array(bad)


# --- drawing and saving ------------------------------------------------------------------------

def test_class_colors_follow_darknet_get_color():
    assert class_color_bgr(0, 80) == (255, 0, 255)  # offset 0: colors[0] = magenta
    # VOC dog = 11: offset 11*123457 % 20 = 7, ratio 1.75 -> r 1, g .75, b 0.
    assert class_color_bgr(11, 20) == (0, 191, 255)


def test_draw_detections_draws_box_and_label_on_a_copy():
    image = np.full((500, 600, 3), 40, np.uint8)
    out = draw_detections(image, [(100, 150, 300, 400), (-20, -5, 900, 700)], ["dog", "person, bicycle"],
                          [11, 14], 20)
    assert np.all(image == 40) and out.shape == image.shape and out.dtype == np.uint8
    width = int(500 * 0.006)  # 3 nested one-pixel rectangles
    color = class_color_bgr(11, 20)
    assert tuple(out[300, 100]) == color and tuple(out[300, 100 + width - 1]) == color
    assert tuple(out[300, 100 + width]) == (40, 40, 40)
    assert np.all(out[140, 101:110] != 40, axis=1).any()  # label background above the box
    assert tuple(out[499, 300]) == class_color_bgr(14, 20)  # second box clipped to the image


def test_save_image_round_trip_and_atomicity(tmp_path):
    chw = np.random.default_rng(6).random((3, 8, 10), dtype=F32)
    save_image(tmp_path / "out.png", chw)
    back = load_image(tmp_path / "out.png")
    np.testing.assert_array_equal(back * F32(255), np.floor(chw * F32(255)))  # (unsigned char)(255*v)
    bgr = np.zeros((8, 10, 3), np.uint8)
    save_image(tmp_path / "out.jpg", bgr)
    assert load_image(tmp_path / "out.jpg").shape == (3, 8, 10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jpg", "out.png"]  # no temp files left
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "out.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not the temp file's 0o600
    with pytest.raises(DarknetError, match="cannot encode"):
        save_image(tmp_path / "out.unknown", bgr)
    with pytest.raises(DarknetError, match="cannot write") as err:
        save_image(tmp_path / "missing_dir" / "out.png", bgr)
    assert "missing_dir" in str(err.value)
