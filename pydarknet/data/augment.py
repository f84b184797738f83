"""Darknet's detection augmentation (`load_data_detection`, final pjreddie commit, no-OpenCV build).

Images are float32 CHW RGB in [0, 1]. Random numbers come from a `numpy.random.Generator`, so the
draws differ from Darknet's `rand()` but their distributions, the geometry and the box maths match.
"""

from __future__ import annotations

import cv2
import numpy as np

from pydarknet.image import resize_image


def rand_uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """Darknet's rand_uniform: swaps reversed bounds (dx's range is negative when the image grows)."""
    if high < low:
        low, high = high, low
    return float(rng.uniform(low, high))


def rand_scale(rng: np.random.Generator, s: float) -> float:
    """A factor in [1, s], inverted half of the time (saturation/exposure)."""
    scale = rand_uniform(rng, 1.0, s)
    return scale if rng.integers(2) else 1.0 / scale


def place_image(im: np.ndarray, w: int, h: int, dx: int, dy: int, canvas: np.ndarray) -> None:
    """Draw `im` resized to w x h at (dx, dy) into `canvas`, in place, clipped to the canvas.

    Darknet samples destination pixel x at source `x / w * im.w` (no half-pixel centring) and its
    bilinear_interpolate reads 0 beyond the last row and column, so the bottom/right edge darkens.
    """
    _, ih, iw = im.shape
    _, ch, cw = canvas.shape
    x0, x1 = max(0, -dx), min(w, cw - dx)
    y0, y1 = max(0, -dy), min(h, ch - dy)
    if x0 >= x1 or y0 >= y1:
        return
    rx = np.arange(x0, x1, dtype=np.float32) / np.float32(w) * np.float32(iw)
    ry = np.arange(y0, y1, dtype=np.float32) / np.float32(h) * np.float32(ih)
    fx, fy = np.floor(rx), np.floor(ry)
    ix, iy = fx.astype(np.intp), fy.astype(np.intp)
    fx, fy = rx - fx, (ry - fy)[:, None]
    padded = np.pad(im, ((0, 0), (0, 1), (0, 1)))  # get_pixel_extend: 0 outside the image
    # Separable (columns, then rows): the same bilinear weights, 4x cheaper than gathering corners.
    cols = np.take(padded, ix, axis=2) * (1 - fx) + np.take(padded, ix + 1, axis=2) * fx
    canvas[:, y0 + dy:y1 + dy, x0 + dx:x1 + dx] = (
        np.take(cols, iy, axis=1) * (1 - fy) + np.take(cols, iy + 1, axis=1) * fy)


def distort_image(im: np.ndarray, hue: float, sat: float, val: float) -> np.ndarray:
    """Darknet's distort_image: shift hue (wrapping), scale saturation and value, back to RGB, clip.

    Saturation/value are not clipped in HSV, so s > 1 gives negative RGB that the final clip zeroes,
    exactly as in Darknet (OpenCV's float HSV uses the same formulas; hue is in degrees there).
    """
    hsv = cv2.cvtColor(np.ascontiguousarray(im.transpose(1, 2, 0), dtype=np.float32), cv2.COLOR_RGB2HSV)
    h = hsv[..., 0] / np.float32(360) + np.float32(hue)
    h = np.where(h > 1, h - 1, h)
    hsv[..., 0] = np.where(h < 0, h + 1, h) * np.float32(360)
    hsv[..., 1] *= np.float32(sat)
    hsv[..., 2] *= np.float32(val)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(rgb, 0, 1).transpose(2, 0, 1).copy()


def random_distort_image(im: np.ndarray, hue: float, saturation: float, exposure: float,
                         rng: np.random.Generator) -> np.ndarray:
    dhue = rand_uniform(rng, -hue, hue)
    dsat = rand_scale(rng, saturation)
    dexp = rand_scale(rng, exposure)
    return distort_image(im, dhue, dsat, dexp)


def randomize_boxes(boxes: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Darknet's (biased) shuffle: swap each box with one picked uniformly from all."""
    boxes = boxes.copy()
    n = len(boxes)
    for i, j in enumerate(rng.integers(n, size=n) if n else []):
        boxes[[i, j]] = boxes[[j, i]]
    return boxes


def correct_boxes(boxes: np.ndarray, dx: float, dy: float, sx: float, sy: float, flip: bool) -> np.ndarray:
    """Map label rows [class, cx, cy, w, h] through a scale/shift/flip into truth rows [x, y, w, h,
    class], clipped to the image. Edges are scaled, not the centre, so clipping shrinks a box."""
    b = boxes.astype(np.float32)
    cx, cy, bw, bh = b[:, 1], b[:, 2], b[:, 3], b[:, 4]
    left, right = (cx - bw / 2) * sx - dx, (cx + bw / 2) * sx - dx
    top, bottom = (cy - bh / 2) * sy - dy, (cy + bh / 2) * sy - dy
    if flip:
        left, right = 1 - right, 1 - left
    left, right, top, bottom = (np.clip(v, 0, 1) for v in (left, right, top, bottom))
    w, h = np.clip(right - left, 0, 1), np.clip(bottom - top, 0, 1)
    # Darknet marks a box centred at (0, 0) with 999999s that break the region layer; give it
    # zero size instead so fill_truth drops it.
    unset = (cx == 0) & (cy == 0)
    w[unset] = h[unset] = 0
    return np.stack([(left + right) / 2, (top + bottom) / 2, w, h, b[:, 0]], axis=1).astype(np.float32)


def fill_truth(boxes: np.ndarray, max_boxes: int, dx: float = 0.0, dy: float = 0.0, sx: float = 1.0,
               sy: float = 1.0, flip: bool = False, rng: np.random.Generator | None = None) -> np.ndarray:
    """Darknet's fill_truth_detection on label rows: (max_boxes, 5) truth rows [x, y, w, h, class],
    zero after the last box. Boxes are shuffled when `rng` is given; the list is cut to max_boxes
    BEFORE boxes under 0.001 wide or high are dropped, so dropped boxes still use up slots."""
    if rng is not None:
        boxes = randomize_boxes(boxes, rng)
    rows = correct_boxes(boxes, dx, dy, sx, sy, flip)[:max_boxes]
    rows = rows[(rows[:, 2].astype(np.float64) >= .001) & (rows[:, 3].astype(np.float64) >= .001)]
    truth = np.zeros((max_boxes, 5), np.float32)
    truth[:len(rows)] = rows
    return truth


def augment_detection(im: np.ndarray, boxes: np.ndarray, w: int, h: int, *, jitter: float, hue: float,
                      saturation: float, exposure: float, max_boxes: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sample as load_data_detection makes it: random aspect jitter, scale in
    [.25, 2] of the network size and position on a grey (0.5) w x h canvas, HSV distortion, flip.
    Returns the (3, h, w) image and the (max_boxes, 5) truth."""
    _, oh, ow = im.shape
    dw, dh = jitter * ow, jitter * oh
    new_ar = (ow + rand_uniform(rng, -dw, dw)) / (oh + rand_uniform(rng, -dh, dh))
    scale = rand_uniform(rng, .25, 2)
    if new_ar < 1:
        nh = scale * h
        nw = nh * new_ar
    else:
        nw = scale * w
        nh = nw / new_ar
    dx = rand_uniform(rng, 0, w - nw)
    dy = rand_uniform(rng, 0, h - nh)
    sized = np.full((im.shape[0], h, w), 0.5, np.float32)
    # place_image takes ints (C truncation) while the boxes use the float values: up to 1px apart.
    place_image(im, int(nw), int(nh), int(dx), int(dy), sized)
    sized = random_distort_image(sized, hue, saturation, exposure, rng)
    flip = bool(rng.integers(2))
    if flip:
        sized = sized[:, :, ::-1].copy()
    truth = fill_truth(boxes, max_boxes, -dx / w, -dy / h, nw / w, nh / h, flip, rng)
    return sized, truth


def crop_image(im: np.ndarray, dx: int, dy: int, w: int, h: int) -> np.ndarray:
    """Darknet's crop_image: a w x h window at (dx, dy); outside the image the border pixel repeats."""
    rows = np.clip(np.arange(dy, dy + h), 0, im.shape[1] - 1)
    cols = np.clip(np.arange(dx, dx + w), 0, im.shape[2] - 1)
    return im[:, rows][:, :, cols]


def augment_detection_crop(im: np.ndarray, boxes: np.ndarray, w: int, h: int, *, jitter: float, hue: float,
                           saturation: float, exposure: float, max_boxes: int,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training sample as the YOLOv2-era load_data_detection makes it: crop each side by up to
    `jitter` of the image (negative = pad with the border), resize_image to w x h, flip, HSV distortion.
    (The later final-commit loader scales to [.25, 2] of the net on a grey canvas: augment_detection.)"""
    _, oh, ow = im.shape
    dw, dh = int(ow * jitter), int(oh * jitter)
    pleft, pright = int(rand_uniform(rng, -dw, dw)), int(rand_uniform(rng, -dw, dw))
    ptop, pbot = int(rand_uniform(rng, -dh, dh)), int(rand_uniform(rng, -dh, dh))
    swidth, sheight = ow - pleft - pright, oh - ptop - pbot
    sx, sy = np.float32(swidth) / np.float32(ow), np.float32(sheight) / np.float32(oh)
    flip = bool(rng.integers(2))
    sized = resize_image(crop_image(im, pleft, ptop, swidth, sheight), w, h)
    if flip:
        sized = sized[:, :, ::-1].copy()
    sized = random_distort_image(sized, hue, saturation, exposure, rng)
    dx, dy = float(np.float32(pleft) / ow / sx), float(np.float32(ptop) / oh / sy)
    truth = fill_truth(boxes, max_boxes, dx, dy, float(1 / sx), float(1 / sy), flip, rng)
    return sized, truth
