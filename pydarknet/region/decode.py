"""Region output -> boxes and class probabilities, as Darknet's `get_region_detections` (final commit).

Box i is Darknet's detection index `anchor*H*W + row*W + col`. Float vs double follows the C code: the
box w/h `exp()` and the letterbox correction of x/y run in double and are rounded to float32 where C
stores into a float. Probabilities are bit-identical; boxes are within 2 ulp, because Darknet's `-Ofast`
build computes the letterbox ratios `(float)new_w/netw` with RCPPS plus one Newton step (gcc's vectorized
float division under -ffast-math: 32.f/32 gives 0.99999994); that depends on the CPU's RCPPS table, so it
is not emulated.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from pydarknet.image import letterbox_geometry
from pydarknet.region.wordtree import Tree, hierarchy_predictions, hierarchy_top_prediction_region


class RegionBoxes(NamedTuple):
    boxes: Tensor  # (N, 4) float32 x, y, w, h (centre and size), relative to the image unless relative=False
    objectness: Tensor  # (N,) obj if obj > thresh else 0 (1 with background)
    probs: Tensor  # (N, classes), or (N, len(map)) for a tree with a map; values <= thresh are 0


def correct_region_boxes(boxes: Tensor, img_w: int, img_h: int, net_w: int, net_h: int,
                         relative: bool = True) -> Tensor:
    """Undo the letterbox: network-relative (N, 4) xywh -> image-relative (pixels unless `relative`)."""
    new_w, new_h = letterbox_geometry(img_w, img_h, net_w, net_h)
    x, y, w, h = boxes.unbind(1)
    # C: b.x = (b.x - (netw - new_w)/2./netw) / ((float)new_w/netw), in double, stored as float.
    x = ((x.double() - (net_w - new_w) / 2.0 / net_w) / float(np.float32(new_w) / np.float32(net_w))).float()
    y = ((y.double() - (net_h - new_h) / 2.0 / net_h) / float(np.float32(new_h) / np.float32(net_h))).float()
    w = w * float(np.float32(net_w) / np.float32(new_w))
    h = h * float(np.float32(net_h) / np.float32(new_h))
    if not relative:
        x, w, y, h = x * img_w, w * img_w, y * img_h, h * img_h
    return torch.stack([x, y, w, h], 1)


def get_region_boxes(out: Tensor, biases: Tensor, n: int, classes: int, coords: int, img_w: int, img_h: int,
                     net_w: int, net_h: int, thresh: float, hier_thresh: float = 0.5,
                     tree: Tree | None = None, map: np.ndarray | Tensor | None = None, relative: bool = True,
                     background: bool = False) -> RegionBoxes:
    """Darknet's `get_region_detections` + `correct_region_boxes` on one activated region output
    (n*(coords+1+classes), H, W). As in C, `map` is only used with a tree; Darknet's averaging with a
    flipped second batch item (`l.batch == 2`, validate's flip) is not part of this per-image decode."""
    device = out.device
    _, h, w = out.shape
    v = out.reshape(n, coords + 1 + classes, h * w)
    cell = torch.arange(h * w, device=device)
    col, row = (cell % w).float(), torch.div(cell, w, rounding_mode="floor").float()
    anchors = biases.reshape(n, 2).to(device=device, dtype=torch.float64)
    bx = (col + v[:, 0]) / w
    by = (row + v[:, 1]) / h
    bw = (torch.exp(v[:, 2].double()) * anchors[:, :1] / w).float()
    bh = (torch.exp(v[:, 3].double()) * anchors[:, 1:] / h).float()
    boxes = correct_region_boxes(torch.stack([bx, by, bw, bh], 2).reshape(-1, 4), img_w, img_h, net_w, net_h,
                                 relative)
    f_thresh = float(np.float32(thresh))  # C compares with a float thresh
    scale = out.new_ones(n * h * w) if background else v[:, coords].reshape(-1)
    objectness = torch.where(scale > f_thresh, scale, 0.0)
    if tree is None:
        probs = scale[:, None] * v[:, coords + 1 :].transpose(1, 2).reshape(-1, classes)
        probs = torch.where((probs > f_thresh) & (objectness[:, None] != 0), probs, 0.0)
        return RegionBoxes(boxes, objectness, probs)
    if map is not None:
        index = coords + 1 + torch.as_tensor(map, dtype=torch.long, device=device)
        picked = tree_region_output(out, n, coords, classes, tree, background).reshape(n, -1, h * w)[:, index]
        probs = scale[:, None] * picked.transpose(1, 2).reshape(-1, len(index))
        return RegionBoxes(boxes, objectness, torch.where(probs > f_thresh, probs, 0.0))
    # Only boxes with scale > thresh get a (single) non-zero prob, so only they need the tree.
    probs = out.new_zeros(n * h * w, classes)
    keep = torch.nonzero(scale > f_thresh)[:, 0]
    first = coords + (not background)
    anchor, cell = torch.div(keep, h * w, rounding_mode="floor"), keep % (h * w)
    top = hierarchy_top_prediction_region(v[:, first : first + classes], anchor, cell, tree, hier_thresh)
    probs[keep, top] = scale[keep]
    return RegionBoxes(boxes, objectness, probs)


def tree_region_output(out: Tensor, n: int, coords: int, classes: int, tree: Tree,
                       background: bool = False) -> Tensor:
    """The region output as `get_region_detections` leaves it for a tree: `hierarchy_predictions` runs in
    place on l.output, from entry `coords + !background` (so with background it starts at the obj entry)."""
    channels, h, w = out.shape
    v = out.reshape(n, coords + 1 + classes, h * w)
    first = coords + (not background)
    absolute = hierarchy_predictions(v[:, first : first + classes], tree, dim=1)
    return torch.cat([v[:, :first], absolute, v[:, first + classes :]], 1).reshape(channels, h, w)
