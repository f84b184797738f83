"""[yolo] box geometry as AlexeyAB's Darknet computes it: `get_yolo_box` and `correct_yolo_boxes`.

Float vs double follows the C code: x, y in float; w, h as `exp(t) * anchor / net` in double stored to
float (with new_coords=1: `t*t*4*anchor/net` in float); the correction of x, y in double, of w, h as
`w * (1/ratio)` in float. `yolo_boxes` takes numpy arrays (the detection path) or tensors (export): the
same operations, the same bits.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from pydarknet.heads import Frame
from pydarknet.image import letterbox_geometry

_F32 = np.float32


def yolo_boxes(raw: Tensor | np.ndarray, col: Tensor | np.ndarray, row: Tensor | np.ndarray,
               anchor_w: Tensor | np.ndarray, anchor_h: Tensor | np.ndarray, grid: tuple[int, int],
               net: tuple[int, int], new_coords: bool) -> tuple:
    """`get_yolo_box` on (..., 4) activated entries (x, y, w, h) at grid cells (col, row) with anchors in
    pixels of the network input, broadcasting: (x, y, w, h) relative to the network input. `grid` and
    `net` are (width, height)."""
    (grid_w, grid_h), (net_w, net_h) = grid, net
    if isinstance(raw, np.ndarray):  # float32 scalars keep numpy in float32, as torch keeps its tensors
        num, exp, wide, narrow = _F32, np.exp, (lambda a: np.asarray(a, np.float64)), (lambda a: a.astype(_F32))
    else:  # sizes as they are: traced, they stay symbolic
        num, exp, wide, narrow = (lambda a: a), torch.exp, (lambda a: a.double()), (lambda a: a.float())
    bx = (col + raw[..., 0]) / num(grid_w)
    by = (row + raw[..., 1]) / num(grid_h)
    if new_coords:  # C: x*x*4*bias/w, all float
        bw = raw[..., 2] * raw[..., 2] * num(4) * anchor_w / num(net_w)
        bh = raw[..., 3] * raw[..., 3] * num(4) * anchor_h / num(net_h)
        return bx, by, bw, bh
    bw = narrow(exp(wide(raw[..., 2])) * wide(anchor_w) / net_w)
    bh = narrow(exp(wide(raw[..., 3])) * wide(anchor_h) / net_h)
    return bx, by, bw, bh


def correct_yolo_boxes(boxes: np.ndarray, frame: Frame) -> np.ndarray:
    """`correct_yolo_boxes`: network-relative (M, 4) float32 xywh -> relative to the image (or its pixels),
    undoing the letterbox when there was one (a plain resize leaves relative boxes as they are)."""
    net_w, net_h = frame.net_w, frame.net_h
    new_w, new_h = (letterbox_geometry(frame.image_w, frame.image_h, net_w, net_h) if frame.letterbox
                    else (net_w, net_h))
    ratio_w, ratio_h = _F32(new_w) / _F32(net_w), _F32(new_h) / _F32(net_h)
    x, y, w, h = boxes.T
    # C: b.x = (b.x - deltaw/2./netw) / ratiow, in double (deltaw and ratiow are floats), stored as float.
    x = ((x.astype(np.float64) - float(_F32(net_w - new_w)) / 2.0 / net_w) / float(ratio_w)).astype(_F32)
    y = ((y.astype(np.float64) - float(_F32(net_h - new_h)) / 2.0 / net_h) / float(ratio_h)).astype(_F32)
    w = w * (_F32(1) / ratio_w)
    h = h * (_F32(1) / ratio_h)
    if not frame.relative:
        img_w, img_h = _F32(frame.image_w), _F32(frame.image_h)
        x, w, y, h = x * img_w, w * img_w, y * img_h, h * img_h
    return np.stack([x, y, w, h], 1)
