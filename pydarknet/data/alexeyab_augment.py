"""One training image as AlexeyAB's load_data_detection makes it (src/data.c, OpenCV build): the crop
rectangle (jitter, resize, letter_box, mosaic's corner move), the truth rows (fill_truth_detection) and the
pixels (image_data_augmentation in src/image_opencv.cpp: crop filled with the mean colour, cv::resize,
flip, HSV in 8 bits, blur, gaussian noise).

Images are uint8 HWC RGB until the end, as AlexeyAB keeps them in a cv::Mat, and go through the same
OpenCV calls, so the pixels are OpenCV's. The random draws come from a `numpy.random.Generator` (their
distributions are Darknet's); the integer and float32 arithmetic of the geometry is C's.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pydarknet.data.augment import correct_boxes, randomize_boxes

_F32 = np.float32
BLUR_BACKGROUND = 1  # blur=1 after the draw: blur all but the boxes (17x17 Gaussian)


def rand_precalc_random(low: float, high: float, r: float) -> np.float32:
    """Darknet's rand_precalc_random in float32: `r` in [0, 1] mapped onto [low, high] (bounds swapped if
    reversed)."""
    low, high = (high, low) if high < low else (low, high)
    return _F32(r) * (_F32(high) - _F32(low)) + _F32(low)


def rand_scale(rng: np.random.Generator, s: float) -> float:
    """A factor in [1, s] (either order), inverted half of the time (saturation, exposure)."""
    low, high = sorted((1.0, float(s)))
    scale = float(_F32(rng.uniform(low, high)))
    return scale if rng.integers(2) else float(_F32(1.0 / scale))


def c_int(value: float) -> int:
    """C's conversion of a float to int: truncation toward zero."""
    return int(value)


@dataclass
class Crop:
    """The source rectangle of one image: pleft/ptop/pright/pbot pixels cut from (> 0) or added to (< 0)
    each side, its size swidth x sheight, and whether the result is mirrored."""

    pleft: int
    ptop: int
    pright: int
    pbot: int
    swidth: int
    sheight: int
    flip: bool


def draw_crop(rng: np.random.Generator, ow: int, oh: int, w: int, h: int, *, jitter: float, resize: float,
              letter_box: bool, flip: bool, mosaic_part: int | None = None) -> Crop:
    """load_data_detection's pleft, pright, ptop, pbot for an ow x oh image and a w x h network input.

    Each side moves by up to `jitter` of the image; `resize` != 1 scales the whole crop by up to that factor
    (below 1: only down); letter_box widens the short side to the network's aspect ratio; in a mosaic
    (`mosaic_part` 0..3, top-left to bottom-right) half of the images are pushed into their corner."""
    dw, dh = c_int(_F32(ow) * _F32(jitter)), c_int(_F32(oh) * _F32(jitter))
    down = _F32(resize)
    up = down
    if down > 1:
        down = _F32(1) / down
    if up < 1:
        up = _F32(1) / up
    min_rdw, min_rdh = (c_int(_F32(side) * (_F32(1) - _F32(1) / down) / _F32(2)) for side in (ow, oh))
    max_rdw, max_rdh = (c_int(_F32(side) * (_F32(1) - _F32(1) / up) / _F32(2)) for side in (ow, oh))
    r1, r2, r3, r4, resize_r1, resize_r2 = rng.random(6)
    mirrored = bool(rng.integers(2)) if flip else False
    pleft = c_int(rand_precalc_random(-dw, dw, r1))
    pright = c_int(rand_precalc_random(-dw, dw, r2))
    ptop = c_int(rand_precalc_random(-dh, dh, r3))
    pbot = c_int(rand_precalc_random(-dh, dh, r4))
    high_w, high_h = (0, 0) if resize < 1 else (max_rdw, max_rdh)  # resize < 1: downsize only
    # `int += float` in C: the sum in float, then truncated.
    pleft = c_int(_F32(pleft) + rand_precalc_random(min_rdw, high_w, resize_r1))
    pright = c_int(_F32(pright) + rand_precalc_random(min_rdw, high_w, resize_r2))
    ptop = c_int(_F32(ptop) + rand_precalc_random(min_rdh, high_h, resize_r1))
    pbot = c_int(_F32(pbot) + rand_precalc_random(min_rdh, high_h, resize_r2))
    if letter_box:
        img_ar, net_ar = _F32(ow) / _F32(oh), _F32(w) / _F32(h)
        if img_ar / net_ar > 1:  # too wide: grow the height to the network's aspect
            delta = (_F32(ow) / net_ar - _F32(oh)) / _F32(2)
            ptop, pbot = c_int(_F32(ptop) - delta), c_int(_F32(pbot) - delta)
        else:
            delta = (_F32(oh) * net_ar - _F32(ow)) / _F32(2)
            pleft, pright = c_int(_F32(pleft) - delta), c_int(_F32(pright) - delta)
    if mosaic_part is not None and rng.integers(2) == 0:
        # Move the image into its corner of the mosaic (the side facing the centre keeps its cut).
        to_left = (mosaic_part in (0, 2)) != mirrored
        to_top = mosaic_part in (0, 1)
        if to_left:
            pright, pleft = pright + pleft, 0
        else:
            pleft, pright = pleft + pright, 0
        if to_top:
            pbot, ptop = pbot + ptop, 0
        else:
            ptop, pbot = ptop + pbot, 0
    swidth, sheight = ow - pleft - pright, oh - ptop - pbot
    if swidth <= 0 or sheight <= 0 or ow - pleft <= 0 or oh - ptop <= 0:
        # Darknet's "invalid resize": the whole image; pright and pbot keep their values, as in C.
        swidth, sheight, pleft, ptop = ow, oh, 0, 0
    return Crop(pleft, ptop, pright, pbot, swidth, sheight, mirrored)


def box_transform(crop: Crop, ow: int, oh: int) -> tuple[float, float, float, float]:
    """(dx, dy, sx, sy) as load_data_detection passes them to fill_truth_detection: relative label
    coordinates become x*sx - dx relative to the crop (float32 arithmetic, 1/sx in double as `1./sx`)."""
    sx, sy = _F32(crop.swidth) / _F32(ow), _F32(crop.sheight) / _F32(oh)
    dx, dy = (_F32(crop.pleft) / _F32(ow)) / sx, (_F32(crop.ptop) / _F32(oh)) / sy
    return float(dx), float(dy), float(_F32(1.0 / float(sx))), float(_F32(1.0 / float(sy)))


def fill_truth_detection(boxes: np.ndarray, max_boxes: int, crop: Crop, ow: int, oh: int, net_w: int, net_h: int,
                         rng: np.random.Generator) -> tuple[np.ndarray, int]:
    """AlexeyAB's fill_truth_detection on label rows [class, cx, cy, w, h]: (max_boxes, 5) truth rows
    [x, y, w, h, class] relative to the network input, zero after the last, and the smallest box side in
    network pixels (0 without boxes; it caps the blur).

    Boxes are shuffled, moved through the crop and clipped to it, cut to max_boxes, then those under one
    network pixel wide or high are dropped (they still used a slot, as in C)."""
    dx, dy, sx, sy = box_transform(crop, ow, oh)
    rows = correct_boxes(randomize_boxes(boxes, rng), dx, dy, sx, sy, crop.flip)[:max_boxes]
    lowest_w, lowest_h = _F32(1) / _F32(net_w), _F32(1) / _F32(net_h)
    x, y, w, h = rows[:, 0], rows[:, 1], rows[:, 2], rows[:, 3]
    keep = (w >= lowest_w) & (h >= lowest_h) & (x > 0) & (x <= 1) & (y > 0) & (y <= 1)
    rows = rows[keep]
    truth = np.zeros((max_boxes, 5), np.float32)
    truth[:len(rows)] = rows
    if not len(rows):
        return truth, 0
    sides = np.minimum(rows[:, 2] * _F32(net_w), rows[:, 3] * _F32(net_h))
    return truth, int(sides.min())


@dataclass
class Distortion:
    """The colour and noise draws of one image (load_data_detection, OpenCV build)."""

    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    blur: int = 0  # 0 none, 1 the background only, > 1 the whole image with a (blur/2)*2+1 kernel
    gaussian_noise: int = 0  # standard deviation of the noise, in 8-bit levels

    @classmethod
    def draw(cls, rng: np.random.Generator, hue: float, saturation: float, exposure: float, blur: int,
             gaussian_noise: int) -> Distortion:
        dhue = float(_F32(rng.uniform(-abs(hue), abs(hue)))) if hue else 0.0
        choice = int(rng.integers(3)) if blur else 0  # rand_int(0, 2)
        noise = gaussian_noise if gaussian_noise and rng.integers(2) else 0
        return cls(dhue, rand_scale(rng, saturation), rand_scale(rng, exposure),
                   0 if choice == 0 else BLUR_BACKGROUND if choice == 1 else blur, noise)

    def capped(self, min_side: int) -> Distortion:
        """A blur stronger than an eighth of the smallest box is lowered to that (C's integer division)."""
        if self.blur > 1 and min_side // 8 < self.blur:
            return Distortion(self.hue, self.saturation, self.exposure, min_side // 8, self.gaussian_noise)
        return self


def _cropped(img: np.ndarray, crop: Crop) -> np.ndarray:
    """The swidth x sheight source rectangle at (pleft, ptop); outside the image the image's mean colour."""
    oh, ow = img.shape[:2]
    swidth, sheight = crop.swidth, crop.sheight
    if crop.pleft == 0 and crop.ptop == 0 and (swidth, sheight) == (ow, oh):
        return img
    mean = np.rint(np.array(cv2.mean(img)[:img.shape[2]]))  # cv::Mat::setTo(cv::mean(img)): cvRound
    out = np.empty((sheight, swidth, img.shape[2]), np.uint8)
    out[:] = mean.astype(np.uint8)
    x0, y0 = max(crop.pleft, 0), max(crop.ptop, 0)
    x1, y1 = min(crop.pleft + swidth, ow), min(crop.ptop + sheight, oh)
    if x1 > x0 and y1 > y0:
        dx, dy = max(0, -crop.pleft), max(0, -crop.ptop)
        out[dy:dy + y1 - y0, dx:dx + x1 - x0] = img[y0:y1, x0:x1]
    return out


def _distort_hsv(sized: np.ndarray, d: Distortion) -> np.ndarray:
    """HSV in 8 bits as image_data_augmentation does it: `hsv[1] *= dsat; hsv[2] *= dexp;
    hsv[0] += 179*dhue` on the cv::Mat channels (rounded, saturated to 0..255: the hue does not wrap)."""
    hue, sat, val = cv2.split(cv2.cvtColor(sized, cv2.COLOR_RGB2HSV))
    sat = cv2.convertScaleAbs(sat, alpha=d.saturation)  # Mat *= double: convertTo with a scale
    val = cv2.convertScaleAbs(val, alpha=d.exposure)
    hue = cv2.add(hue, (float(_F32(179) * _F32(d.hue)), 0.0, 0.0, 0.0))  # Mat += Scalar
    return cv2.cvtColor(cv2.merge([hue, sat, val]), cv2.COLOR_HSV2RGB)


def _blur(sized: np.ndarray, blur: int, truth: np.ndarray) -> np.ndarray:
    if blur == BLUR_BACKGROUND:
        out = cv2.GaussianBlur(sized, (17, 17), 0)
        rows, cols = sized.shape[:2]
        for x, y, w, h, _ in truth:
            if not x:
                break
            left, top = int((float(x) - float(w) / 2.0) * cols), int((float(y) - float(h) / 2.0) * rows)
            width, height = c_int(_F32(w) * _F32(cols)), c_int(_F32(h) * _F32(rows))
            x0, y0 = max(left, 0), max(top, 0)
            x1, y1 = min(left + width, cols), min(top + height, rows)
            if x1 > x0 and y1 > y0:
                out[y0:y1, x0:x1] = sized[y0:y1, x0:x1]
        return out
    size = (blur // 2) * 2 + 1
    return cv2.GaussianBlur(sized, (size, size), 0)


def image_data_augmentation(img: np.ndarray, w: int, h: int, crop: Crop, d: Distortion, truth: np.ndarray,
                            rng: np.random.Generator) -> np.ndarray:
    """The w x h network input from a uint8 HWC RGB image: crop (mean colour outside), cv::resize
    INTER_LINEAR, flip, HSV, blur (the background only keeps the `truth` boxes sharp), noise; float32 CHW
    RGB, byte / 255."""
    sized = cv2.resize(_cropped(img, crop), (w, h), interpolation=cv2.INTER_LINEAR)
    if crop.flip:
        sized = cv2.flip(sized, 1)
    if d.saturation != 1 or d.exposure != 1 or d.hue != 0:
        sized = _distort_hsv(sized, d)
    if d.blur:
        sized = _blur(sized, d.blur, truth)
    if d.gaussian_noise:
        # cv::randn into a uint8 Mat: rounded and saturated, so the noise only ever brightens.
        sigma = min(max(d.gaussian_noise, 0), 127)
        noise = np.clip(np.rint(rng.normal(0.0, sigma, sized.shape)), 0, 255).astype(np.uint8)
        sized = cv2.add(sized, noise)
    return np.ascontiguousarray(sized.transpose(2, 0, 1), dtype=np.float32) / _F32(255)
