"""Images as Darknet sees them: float32 CHW RGB in [0, 1], its resize/letterbox maths bit for bit.

Decoding uses OpenCV rather than Darknet's stb_image, so JPEG pixels may differ by a few levels;
everything after decoding (resize_image, letterbox_image, the 0.5 canvas) reproduces `src/image.c`.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from pydarknet.errors import DarknetError
from pydarknet.fileio import atomic_write, read_bytes
from pydarknet.paths import resolve_path

_F32 = np.float32
# Darknet's get_color palette (src/image.c), rows indexed by the colour ratio, columns r, g, b.
_COLORS = np.array([[1, 0, 1], [0, 0, 1], [0, 1, 1], [0, 1, 0], [1, 1, 0], [1, 0, 0]], dtype=_F32)
# Darknet saves JPEGs through stbi_write_jpg with quality 80.
_JPEG_QUALITY = 80


def load_image(path: str | Path) -> np.ndarray:
    """Decode `path` as Darknet's load_image_color does: (3, h, w) float32 RGB, byte / 255.

    EXIF orientation is ignored (stb_image never reads it); grey images get three equal channels,
    alpha is dropped, 16-bit samples are scaled by 1/65535. A path missing from the working directory is
    looked up in the package's data (`resolve_path`: the demo image `data/shapes.jpg`).
    """
    path = resolve_path(path)
    return _decoded_to_chw(decode_image_file(path, cv2.IMREAD_UNCHANGED | cv2.IMREAD_IGNORE_ORIENTATION), path)


def decode_image_file(path: str | Path, flags: int) -> np.ndarray:
    """OpenCV's decoding of the image file `path` with imread `flags`; a DarknetError naming the file if
    it cannot be read or decoded."""
    try:
        # Stat first: reading a FIFO or a device such as /dev/zero would block or never end.
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError as err:
        raise DarknetError(f"cannot read image: {err.strerror or err}", file=path) from err
    if not regular:
        raise DarknetError("cannot read image: not a regular file", file=path)
    # The bytes + imdecode instead of imread: imread cannot open non-ASCII paths on every platform.
    data = np.frombuffer(read_bytes(path, "image"), dtype=np.uint8)
    decoded = None
    if data.size:
        try:
            decoded = cv2.imdecode(data, flags)
        except cv2.error:
            decoded = None
    if decoded is None:
        reason = "empty file" if data.size == 0 else "not a supported image or truncated"
        raise DarknetError(f"cannot read image: {reason}", file=path)
    return decoded


def _decoded_to_chw(decoded: np.ndarray, path: str | Path) -> np.ndarray:
    if decoded.dtype == np.uint8:
        scale = _F32(255)
    elif decoded.dtype == np.uint16:
        scale = _F32(65535)
    else:
        raise DarknetError(f"cannot read image: unsupported sample type {decoded.dtype}", file=path)
    if decoded.ndim == 2:
        decoded = decoded[:, :, None]
    channels = decoded.shape[2]
    if channels == 1:
        rgb = np.repeat(decoded, 3, axis=2)
    elif channels in (3, 4):
        rgb = decoded[:, :, 2::-1]  # BGR(A) -> RGB, alpha dropped
    else:
        raise DarknetError(f"cannot read image: {channels} channels", file=path)
    # float32 division by 255 is correctly rounded, so it equals stb's (float)byte/255. exactly.
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=_F32) / scale


def image_from_array(arr: np.ndarray) -> np.ndarray:
    """A caller's numpy image as float32 CHW RGB.

    uint8 arrays are taken as HWC RGB (or HW grey) and divided by 255 like decoded files; float arrays
    are taken as CHW already scaled to [0, 1] (3 channels, or 1 replicated).
    """
    arr = np.asarray(arr)
    if arr.dtype == np.uint8:
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.ndim != 3 or arr.shape[2] not in (1, 3):
            raise DarknetError(f"uint8 image must be HxWx3 RGB or HxW grey, got shape {arr.shape}")
        chw = np.repeat(arr, 3, axis=2) if arr.shape[2] == 1 else arr
        out = np.ascontiguousarray(chw.transpose(2, 0, 1), dtype=_F32) / _F32(255)
    elif np.issubdtype(arr.dtype, np.floating):
        if arr.ndim != 3 or arr.shape[0] not in (1, 3):
            raise DarknetError(f"float image must be 3xHxW (CHW RGB), got shape {arr.shape}")
        out = np.ascontiguousarray(np.repeat(arr, 3, axis=0) if arr.shape[0] == 1 else arr, dtype=_F32)
    else:
        raise DarknetError(f"image array must be uint8 HWC or float CHW, got dtype {arr.dtype}")
    if out.shape[1] == 0 or out.shape[2] == 0:
        raise DarknetError(f"image array is empty, shape {arr.shape}")
    return out


def _taps(old: int, new: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output index: source index and fraction, exactly as resize_image computes them in float32.

    scale = (float)(old-1)/(new-1) in float32 (align-corners); a target of 1 would divide by zero in
    Darknet (inf/NaN scale, UB cast), so it uses scale 0 there: the single sample sits at source 0.
    """
    scale = _F32(old - 1) / _F32(new - 1) if new > 1 else _F32(0)
    pos = np.arange(new, dtype=_F32) * scale  # int*float in C: the int converts exactly (< 2**24)
    idx = pos.astype(np.intp)  # (int)pos truncates; pos <= old-1 up to rounding, so idx <= old-1
    return idx, pos - idx.astype(_F32)


def resize_image(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """Darknet's resize_image: separable bilinear, columns first, float32 throughout, bit-exact.

    Output column c is `(1-dx)*src[ix] + dx*src[ix+1]` (the last column, or any column of a
    1-pixel-wide source, copies source column old_w-1). Output row r is `(1-dy)*part[iy]` plus
    `dy*part[iy+1]` except for the last row (or a 1-pixel-high source): Darknet never adds the second
    term there, yet still scales by 1-dy, so unless the float32 sy lands exactly on old_h-1 that row
    is dimmed (sy just above: dy ~ 1e-6) or nearly black (sy just below: iy = old_h-2, dy ~ 1). This
    is reproduced; columns have no such quirk (the last one is copied).

    Only the horizontal-pass rows that the vertical pass reads are computed (each row of Darknet's
    `part` buffer is independent), one channel at a time. Peak extra memory is therefore about
    3 * min(2*h, old_h) * w float32 per channel plus the output: under 10 MB for a 12000x12000 ->
    416x416 letterbox, whatever the source size.
    """
    if w < 0 or h < 0:
        raise ValueError(f"resize_image to negative size {w}x{h}")
    im = np.asarray(im, dtype=_F32)  # no copy for float32; other dtypes would not round like C
    c, old_h, old_w = im.shape
    ix, dx = _taps(old_w, w)
    if w:
        ix[-1], dx[-1] = old_w - 1, 0  # last column copies: (1-0)*a + 0*b == a for finite a
    ix1 = np.minimum(ix + 1, old_w - 1)
    iy, dy = _taps(old_h, h)
    second = np.arange(h) != h - 1  # C: `if(r == h-1 || im.h == 1) continue;` (im.h == 1 gives dy = 0)
    dy2 = np.where(second, dy, _F32(0))[:, None]  # adding 0*b leaves (1-dy)*a unchanged
    iy1 = np.minimum(iy + 1, old_h - 1)
    rows, inverse = np.unique(np.concatenate((iy, iy1)), return_inverse=True)
    top, bottom = inverse[:h], inverse[h:]
    dy1 = (_F32(1) - dy)[:, None]
    dx1 = _F32(1) - dx
    out = np.empty((c, h, w), dtype=_F32)
    for k in range(c):
        channel = im[k]
        part = dx1 * channel[np.ix_(rows, ix)]
        part += dx * channel[np.ix_(rows, ix1)]
        np.add(dy1 * part[top], dy2 * part[bottom], out=out[k])
    return out


def resize_plain(im: np.ndarray, w: int, h: int) -> np.ndarray:
    """The network input without letterboxing (`--resize`): Darknet's resize_image to exactly w x h."""
    return resize_image(im, w, h)


def letterbox_geometry(img_w: int, img_h: int, net_w: int, net_h: int) -> tuple[int, int]:
    """(new_w, new_h) of the resized image inside Darknet's letterbox (also used to correct boxes).

    The aspect test is float32 as in C (`(float)w/im.w < (float)h/im.h`); the sizes use int division.
    """
    if _F32(net_w) / _F32(img_w) < _F32(net_h) / _F32(img_h):
        return net_w, img_h * net_w // img_w
    return img_w * net_h // img_h, net_h


def letterbox_image(im: np.ndarray, net_w: int, net_h: int) -> np.ndarray:
    """Darknet's letterbox_image: aspect-kept resize_image centred on a 0.5 canvas, (3, net_h, net_w)."""
    c, img_h, img_w = im.shape
    new_w, new_h = letterbox_geometry(img_w, img_h, net_w, net_h)
    boxed = np.full((c, net_h, net_w), 0.5, dtype=_F32)
    dx, dy = (net_w - new_w) // 2, (net_h - new_h) // 2
    boxed[:, dy:dy + new_h, dx:dx + new_w] = resize_image(im, new_w, new_h)
    return boxed


def get_color(c: int, x: int, max_value: int) -> float:
    """Darknet's get_color: channel c (0 b, 1 g, 2 r as draw_detections calls it) of colour x of max_value."""
    ratio = _F32(x) / _F32(max_value) * _F32(5)
    i, j = int(np.floor(ratio)), int(np.ceil(ratio))
    ratio -= _F32(i)
    return float((_F32(1) - ratio) * _COLORS[i, c] + ratio * _COLORS[j, c])


def class_color_bgr(class_id: int, num_classes: int) -> tuple[int, int, int]:
    """The box colour Darknet gives a class, as 8-bit BGR (its save truncates 255*value to a byte)."""
    offset = class_id * 123457 % num_classes
    blue, green, red = (int(_F32(255) * _F32(get_color(c, offset, num_classes))) for c in (0, 1, 2))
    return blue, green, red


def draw_detections(image_bgr_uint8: np.ndarray, boxes: Sequence[Sequence[int]] | np.ndarray,
                    labels: Sequence[str], class_ids: Sequence[int], num_classes: int) -> np.ndarray:
    """A copy of the image with Darknet-style boxes and labels.

    boxes are (left, top, right, bottom) pixels; labels the text per box (Darknet joins several class
    names with ", "); class_ids the first class of each box, which picks the colour.
    """
    out = image_bgr_uint8.copy()
    im_h, im_w = out.shape[:2]
    # Darknet draws int(h*.006) nested 1-pixel boxes, i.e. none below 167 px; keep at least one visible.
    width = max(1, int(im_h * 0.006))
    font_scale = max(0.4, im_h * 0.03 / 22)  # Hershey simplex caps are ~22 px at scale 1
    thickness = max(1, round(font_scale))
    for (left, top, right, bottom), label, cls in zip(boxes, labels, class_ids, strict=True):
        left, right = (int(np.clip(v, 0, im_w - 1)) for v in (left, right))
        top, bottom = (int(np.clip(v, 0, im_h - 1)) for v in (top, bottom))
        color = class_color_bgr(int(cls), num_classes)
        for i in range(width):  # draw_box_width: the box grows inwards
            cv2.rectangle(out, (left + i, top + i), (right - i, bottom - i), color, 1)
        (tw, th), base = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        label_h = th + base + 2
        # draw_label(im, top + width, left, ...): above the box when it fits, else inside it.
        y0 = top + width - label_h if top + width - label_h >= 0 else top + width
        cv2.rectangle(out, (left, y0), (left + tw + 2, y0 + label_h), color, cv2.FILLED)
        cv2.putText(out, label, (left + 1, y0 + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0),
                    thickness, cv2.LINE_AA)
    return out


def save_image(path: str | Path, image: np.ndarray) -> None:
    """Write a float CHW RGB image (as Darknet's save_image) or a uint8 HWC BGR image atomically.

    The format comes from the extension (Darknet's save_image appends ".jpg": the caller adds it).
    Float values become bytes like Darknet's `(unsigned char)(255*v)` (truncation), clipped first.
    """
    path = Path(path)
    if image.dtype == np.uint8:
        bgr = image
    else:
        bytes_ = (np.clip(image.astype(_F32), 0, 1) * _F32(255)).astype(np.uint8)
        bgr = np.ascontiguousarray(bytes_[::-1].transpose(1, 2, 0))
    params = [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY] if path.suffix.lower() in (".jpg", ".jpeg") else []
    try:
        ok, encoded = cv2.imencode(path.suffix, bgr, params)
    except cv2.error:
        ok = False
    if not ok:
        raise DarknetError(f"cannot encode image as {path.suffix or '(no extension)'}", file=path)
    try:
        atomic_write(path, encoded.tobytes(), make_dirs=False)  # as Darknet: into an existing directory
    except OSError as err:
        raise DarknetError(f"cannot write image: {err.strerror or err}", file=path) from err
