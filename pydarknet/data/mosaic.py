"""AlexeyAB's multi-image samples (load_data_detection, OpenCV build): mosaic=1 (four images, one per
quadrant around a random cut point) and mixup=1 (two images blended half and half), with the truth rows
they produce (blend_truth_mosaic, blend_truth).

Quadrant `part` 0..3 is top-left, top-right, bottom-left, bottom-right. Each image was augmented to the full
network size; its quadrant shows the part of it next to the cut point, shifted so that padding added by a
negative crop offset stays out of view.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pydarknet.data.alexeyab_augment import Crop, c_int

_F32 = np.float32
MIN_OFFSET = _F32(0.2)  # the cut point stays within the middle 60% of each side


def _c_div(a: int, b: int) -> int:
    """C's integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def mosaic_cut(rng: np.random.Generator, w: int, h: int) -> tuple[int, int]:
    """(cut_x, cut_y): rand_int over [w*0.2, w*0.8] and [h*0.2, h*0.8] (float products truncated)."""
    lo_x, hi_x = c_int(_F32(w) * MIN_OFFSET), c_int(_F32(w) * (_F32(1) - MIN_OFFSET))
    lo_y, hi_y = c_int(_F32(h) * MIN_OFFSET), c_int(_F32(h) * (_F32(1) - MIN_OFFSET))
    return int(rng.integers(lo_x, hi_x + 1)), int(rng.integers(lo_y, hi_y + 1))


@dataclass(frozen=True)
class Shifts:
    """How far each side of an augmented image is moved inward so its padding is not shown, in network
    pixels, bounded by the quadrant."""

    left: int
    top: int
    right: int
    bottom: int

    @classmethod
    def of(cls, crop: Crop, ow: int, oh: int, w: int, h: int, cut_x: int, cut_y: int) -> Shifts:
        # The image was mirrored after cropping: its left padding is now on the right.
        pleft, pright = (crop.pright, crop.pleft) if crop.flip else (crop.pleft, crop.pright)
        return cls(min(cut_x, max(0, _c_div(-pleft * w, ow))), min(cut_y, max(0, _c_div(-crop.ptop * h, oh))),
                   min(w - cut_x, max(0, _c_div(-pright * w, ow))),
                   min(h - cut_y, max(0, _c_div(-crop.pbot * h, oh))))


def paste_quadrant(canvas: np.ndarray, image: np.ndarray, part: int, cut_x: int, cut_y: int, s: Shifts) -> None:
    """Copy quadrant `part` of the mosaic from the augmented (c, h, w) `image` into `canvas`, in place."""
    _, h, w = canvas.shape
    src_x = s.left if part in (1, 3) else w - cut_x - s.right
    src_y = s.top if part in (2, 3) else h - cut_y - s.bottom
    xs = slice(cut_x, w) if part in (1, 3) else slice(0, cut_x)
    ys = slice(cut_y, h) if part in (2, 3) else slice(0, cut_y)
    width, height = xs.stop - xs.start, ys.stop - ys.start
    canvas[:, ys, xs] = image[:, src_y:src_y + height, src_x:src_x + width]


def _count(truth: np.ndarray) -> int:
    """Rows before the first with x == 0 (Darknet's end of the truth list)."""
    zero = np.flatnonzero(truth[:, 0] == 0)
    return int(zero[0]) if len(zero) else len(truth)


def blend_truth_mosaic(truth: np.ndarray, new: np.ndarray, part: int, cut_x: int, cut_y: int, s: Shifts,
                       w: int, h: int, *, mosaic_bound: bool) -> None:
    """Append the boxes of quadrant `part`'s image (`new`, its own truth rows) to the mosaic's `truth`, in
    place: shifted as the pixels were, then clipped to the whole canvas (mosaic_bound=1: to the quadrant)
    in integer pixels, and kept only if inside, non-empty and at least a pixel wide and high."""
    lowest_w, lowest_h = _F32(1) / _F32(w), _F32(1) / _F32(h)
    fw, fh = _F32(w), _F32(h)
    at = _count(truth)
    for k in range(len(truth) - at):
        if k >= len(new) or not new[k, 0]:
            break
        xb, yb, wb, hb = (_F32(v) for v in new[k, :4])
        if part in (0, 2):
            xb = xb - _F32(w - cut_x - s.right) / fw
        else:
            xb = xb + _F32(cut_x - s.left) / fw
        if part in (0, 1):
            yb = yb - _F32(h - cut_y - s.bottom) / fh
        else:
            yb = yb + _F32(cut_y - s.top) / fh
        half_w, half_h = wb / _F32(2), hb / _F32(2)
        left, right = c_int((xb - half_w) * fw), c_int((xb + half_w) * fw)
        top, bot = c_int((yb - half_h) * fh), c_int((yb + half_h) * fh)
        if mosaic_bound:
            x_lo, x_hi = (0, cut_x) if part in (0, 2) else (cut_x, w)
            y_lo, y_hi = (0, cut_y) if part in (0, 1) else (cut_y, h)
            left, right, top, bot = max(left, x_lo), min(right, x_hi), max(top, y_lo), min(bot, y_hi)
            xb, wb = _F32(right + left) / _F32(2) / fw, _F32(right - left) / fw
            yb, hb = _F32(bot + top) / _F32(2) / fh, _F32(bot - top) / fh
        else:
            # Move the out-of-canvas edge in, keeping the other edge where it is.
            if left < 0:
                diff = _F32(left) / fw
                xb, wb = xb - diff / _F32(2), wb + diff
            if right > w:
                diff = _F32(right - w) / fw
                xb, wb = xb - diff / _F32(2), wb - diff
            if top < 0:
                diff = _F32(top) / fh
                yb, hb = yb - diff / _F32(2), hb + diff
            if bot > h:
                diff = _F32(bot - h) / fh
                yb, hb = yb - diff / _F32(2), hb - diff
            half_w, half_h = wb / _F32(2), hb / _F32(2)
            left, right = c_int((xb - half_w) * fw), c_int((xb + half_w) * fw)
            top, bot = c_int((yb - half_h) * fh), c_int((yb + half_h) * fh)
        inside = left >= 0 and right <= w and top >= 0 and bot <= h
        if inside and 0 < wb < 1 and 0 < hb < 1 and 0 < xb < 1 and 0 < yb < 1 and wb > lowest_w and hb > lowest_h:
            truth[at] = (xb, yb, wb, hb, new[k, 4])
            at += 1


def blend_truth(truth: np.ndarray, new: np.ndarray) -> None:
    """mixup=1: append the second image's boxes after the first's, in place, while slots are left."""
    at = _count(truth)
    count = min(_count(new), len(truth) - at)
    truth[at:at + count] = new[:count]


def blend_images(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """mixup=1's pixels: cv::addWeighted(second, .5, first, .5) (exact in float32)."""
    return (second * _F32(0.5) + first * _F32(0.5)).astype(np.float32)
