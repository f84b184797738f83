"""Darknet's detection augmentation: placement, HSV distortion, box maths."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pydarknet.data.augment import (
    augment_detection,
    correct_boxes,
    distort_image,
    fill_truth,
    place_image,
    rand_scale,
    rand_uniform,
    randomize_boxes,
)


def place_image_c(im: np.ndarray, w: int, h: int, dx: int, dy: int, canvas: np.ndarray) -> None:
    """Line-by-line transcription of Darknet's place_image + bilinear_interpolate."""
    c, ih, iw = im.shape

    def extend(x: int, y: int, k: int) -> float:
        return 0.0 if x < 0 or x >= iw or y < 0 or y >= ih else float(im[k, y, x])

    for k in range(c):
        for y in range(h):
            for x in range(w):
                rx = float(np.float32(x) / np.float32(w) * np.float32(iw))
                ry = float(np.float32(y) / np.float32(h) * np.float32(ih))
                ix, iy = math.floor(rx), math.floor(ry)
                fx, fy = rx - ix, ry - iy
                val = ((1 - fy) * (1 - fx) * extend(ix, iy, k) + fy * (1 - fx) * extend(ix, iy + 1, k)
                       + (1 - fy) * fx * extend(ix + 1, iy, k) + fy * fx * extend(ix + 1, iy + 1, k))
                if 0 <= x + dx < canvas.shape[2] and 0 <= y + dy < canvas.shape[1]:
                    canvas[k, y + dy, x + dx] = val


@pytest.mark.parametrize("w, h, dx, dy", [(9, 7, 1, 2), (4, 3, 0, 0), (12, 10, -3, -2), (6, 5, 5, 4),
                                          (5, 5, 20, 0)])
def test_place_image_matches_darknet_loop(w: int, h: int, dx: int, dy: int) -> None:
    im = np.random.default_rng(1).random((3, 5, 6), dtype=np.float32)
    ours, ref = np.full((3, 8, 9), .5, np.float32), np.full((3, 8, 9), .5, np.float32)
    place_image(im, w, h, dx, dy, ours)
    place_image_c(im, w, h, dx, dy, ref)
    np.testing.assert_allclose(ours, ref, atol=1e-6)


def darknet_distort(im: np.ndarray, hue: float, sat: float, val: float) -> np.ndarray:
    """Darknet's rgb_to_hsv / shift+scale / hsv_to_rgb / constrain, vectorised."""
    r, g, b = im.astype(np.float64)
    mx, mn = im.max(0), im.min(0)
    delta = mx - mn
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(mx == 0, 0, delta / mx)
        h = np.where(r == mx, (g - b) / delta, np.where(g == mx, 2 + (b - r) / delta, 4 + (r - g) / delta))
    h = np.where(h < 0, h + 6, h) / 6
    h = np.where(mx == 0, 0, h) + hue
    h = np.where(h > 1, h - 1, h)
    h = np.where(h < 0, h + 1, h)
    s, v = s * sat, mx * val
    h6 = 6 * h
    index = np.floor(h6)
    f = h6 - index
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    table = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = np.zeros_like(im, dtype=np.float64)
    for i, rgb in enumerate(table):
        sel = (np.minimum(index, 5) == i) & (s != 0)
        for k in range(3):
            out[k][sel] = rgb[k][sel]
    out[:, s == 0] = v[s == 0]
    return np.clip(out, 0, 1)


def test_hsv_round_trip_without_distortion_is_identity() -> None:
    im = np.random.default_rng(0).random((3, 17, 23), dtype=np.float32)
    im[:, 0, :5] = 0.3  # grey pixels: Darknet's hue is 0/0 there, harmless because s == 0
    im[:, 1, :5] = 0.0
    np.testing.assert_allclose(distort_image(im, 0.0, 1.0, 1.0), im, atol=1e-5)


@pytest.mark.parametrize("hue, sat, val", [(0.1, 1.5, 0.7), (-0.3, 0.5, 1.5), (0.45, 2, 2), (-0.05, 1, 1)])
def test_distort_matches_darknet_formulas(hue: float, sat: float, val: float) -> None:
    im = np.random.default_rng(2).random((3, 20, 20), dtype=np.float32)
    ours = distort_image(im, hue, sat, val)
    assert ours.dtype == np.float32 and ours.shape == im.shape
    np.testing.assert_allclose(ours, darknet_distort(im, hue, sat, val), atol=1e-4)
    if sat > 1:  # saturation beyond 1 pushes a channel negative; only the final clip catches it
        assert (ours == 0).sum() > (im == 0).sum()


def test_rand_helpers_follow_darknet_ranges() -> None:
    rng = np.random.default_rng(0)
    values = [rand_uniform(rng, 3, -2) for _ in range(200)]
    assert min(values) >= -2 and max(values) <= 3 and min(values) < 0 < max(values)
    scales = np.array([rand_scale(rng, 1.5) for _ in range(400)])
    assert scales.min() >= 1 / 1.5 and scales.max() <= 1.5
    assert 0.35 < (scales >= 1).mean() < 0.65
    assert rand_scale(rng, 1) == 1


LABELS = np.array([[0, .5, .5, .2, .4], [1, .1, .2, .1, .1], [2, .9, .9, .3, .3]], np.float32)


def test_correct_boxes_identity_clips_edges() -> None:
    rows = correct_boxes(LABELS, 0, 0, 1, 1, False)
    np.testing.assert_allclose(rows[0], [.5, .5, .2, .4, 0], atol=1e-6)
    # right/bottom edges 1.05 are clipped to 1, so the centre moves in and the box shrinks
    np.testing.assert_allclose(rows[2], [.875, .875, .25, .25, 2], atol=1e-6)


def test_correct_boxes_scale_shift_flip() -> None:
    # image drawn at half size, shifted right by a quarter of the canvas (dx = -0.25), then flipped
    rows = correct_boxes(LABELS[:1], -0.25, 0.0, 0.5, 1.0, True)
    left, right = 0.4 * 0.5 + 0.25, 0.6 * 0.5 + 0.25
    np.testing.assert_allclose(rows[0], [1 - (left + right) / 2, .5, right - left, .4, 0], atol=1e-6)


def test_fill_truth_layout_drops_tiny_boxes_after_the_cut() -> None:
    labels = np.array([[4, .5, .5, .0005, .3], [1, .3, .3, .2, .2], [2, .7, .7, .1, .1]], np.float32)
    truth = fill_truth(labels, max_boxes=2)
    # the tiny first box used up one of the two slots, so only one box survives
    np.testing.assert_allclose(truth, [[.3, .3, .2, .2, 1], [0, 0, 0, 0, 0]], atol=1e-6)
    assert fill_truth(labels, 30)[:3, 4].tolist() == [1, 2, 0]
    # a box pushed entirely off the canvas clips to zero size and is dropped
    assert not fill_truth(labels[1:2], 5, dx=2.0).any()
    # Darknet's "unset" box centred at (0, 0) is dropped instead of becoming 999999s
    assert not fill_truth(np.array([[0, 0, 0, .2, .2]], np.float32), 5).any()


def test_randomize_boxes_permutes() -> None:
    rng = np.random.default_rng(3)
    boxes = np.arange(40, dtype=np.float32).reshape(8, 5)
    orders = {tuple(randomize_boxes(boxes, rng)[:, 0]) for _ in range(20)}
    assert len(orders) > 10
    assert all(sorted(o) == sorted(boxes[:, 0]) for o in orders)
    assert randomize_boxes(boxes[:0], rng).shape == (0, 5)


def rectangle_image(rng: np.random.Generator, iw: int, ih: int) -> tuple[np.ndarray, np.ndarray]:
    """A red rectangle (R=1, G=B=0) on black, with its Darknet label."""
    x0, y0 = rng.integers(5, iw // 2), rng.integers(5, ih // 2)
    x1, y1 = rng.integers(x0 + 8, iw - 5), rng.integers(y0 + 8, ih - 5)
    im = np.zeros((3, ih, iw), np.float32)
    im[0, y0:y1, x0:x1] = 1
    label = [0, (x0 + x1) / 2 / iw, (y0 + y1) / 2 / ih, (x1 - x0) / iw, (y1 - y0) / ih]
    return im, np.array([label], np.float32)


def red_extent(sized: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # the rectangle is where red dominates; the grey 0.5 canvas has R == G
    return np.nonzero((sized[0] > 0.5) & (sized[1] < 0.25))


def assert_box_matches(ys: np.ndarray, xs: np.ndarray, row: np.ndarray, w: int, h: int, tol: float) -> None:
    x, y, bw, bh, _ = row
    assert abs(xs.min() - (x - bw / 2) * w) < tol and abs(xs.max() + 1 - (x + bw / 2) * w) < tol
    assert abs(ys.min() - (y - bh / 2) * h) < tol and abs(ys.max() + 1 - (y + bh / 2) * h) < tol


@pytest.mark.parametrize("nw, nh, dx, dy, flip", [
    (96, 77, 0, 10, False), (96, 77, 0, 10, True), (60, 48, 20, 30, True),
    (190, 150, -50, -40, False),  # grown past the canvas: the box is clipped
    (190, 150, -50, -40, True), (24, 20, 70, 5, False),
])
def test_truth_box_matches_the_placed_rectangle(nw: int, nh: int, dx: int, dy: int, flip: bool) -> None:
    # Integer geometry, so place_image's truncation plays no part: edges agree to the pixel grid
    # (1px) plus half a source pixel, because Darknet samples pixel x at x / w * im.w (no +0.5).
    w = h = 96
    rng = np.random.default_rng(nw + dx)
    for _ in range(5):
        im, labels = rectangle_image(rng, 200, 160)
        canvas = np.full((3, h, w), .5, np.float32)
        place_image(im, nw, nh, dx, dy, canvas)
        if flip:
            canvas = canvas[:, :, ::-1]
        truth = fill_truth(labels, 30, -dx / w, -dy / h, nw / w, nh / h, flip)
        ys, xs = red_extent(canvas)
        if not truth[0, 2]:
            assert len(xs) == 0
            continue
        assert_box_matches(ys, xs, truth[0], w, h, 1 + 0.5 * max(nw / 200, nh / 160) + 1e-3)


def test_augmented_truth_covers_the_rectangle() -> None:
    rng = np.random.default_rng(5)
    w = h = 96
    visible = 0
    for _ in range(60):
        im, labels = rectangle_image(rng, 200, 160)
        sized, truth = augment_detection(im, labels, w, h, jitter=0.3, hue=0, saturation=1, exposure=1, max_boxes=30,
                                         rng=rng)
        assert sized.shape == (3, h, w) and sized.dtype == np.float32 and truth.shape == (30, 5)
        assert not truth[1:].any() and truth[0, 4] == 0
        ys, xs = red_extent(sized)
        if not truth[0, 2]:
            assert len(xs) <= 2  # a box is dropped only when (almost) nothing is visible
            continue
        visible += 1
        # On top of the exact-geometry tolerance, place_image truncates dx, dy, nw, nh to ints
        # while the truth uses the floats: up to 1px more (scale here is at most 2 * 96/160).
        assert_box_matches(ys, xs, truth[0], w, h, 2 + 0.5 * 1.2 + 1e-3)
    assert visible > 40


def test_augment_is_deterministic_given_the_generator() -> None:
    im = np.random.default_rng(0).random((3, 50, 70), dtype=np.float32)
    options = dict(jitter=.2, hue=.1, saturation=1.5, exposure=1.5, max_boxes=30)
    a = augment_detection(im, LABELS, 64, 48, **options, rng=np.random.default_rng(9))
    b = augment_detection(im, LABELS, 64, 48, **options, rng=np.random.default_rng(9))
    c = augment_detection(im, LABELS, 64, 48, **options, rng=np.random.default_rng(10))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].min() >= 0 and a[0].max() <= 1
