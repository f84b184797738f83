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
from pydarknet.region.wordtree import Tree, hierarchy_predictions, top_prediction_region

_F32 = np.float32


class RegionBoxes(NamedTuple):
    boxes: Tensor  # (N, 4) float32 x, y, w, h (centre and size), relative to the image unless relative=False
    objectness: Tensor  # (N,) obj if obj > thresh else 0 (1 with background)
    probs: Tensor  # (N, classes), or (N, len(map)) for a tree with a map; values <= thresh are 0


class RegionCandidates(NamedTuple):
    """The non-zero probs of `get_region_boxes` (without `map`) as (box, class, prob) triples, and the boxes
    they belong to; numpy arrays on the CPU.

    Every non-zero prob is > thresh (Darknet zeroes the others), so these are all that NMS and the printed
    detections read: on a 9418-class output a few entries of an 867 x 9418 matrix."""

    index: np.ndarray  # (M,) detection index of each box with a non-zero prob, ascending
    boxes: np.ndarray  # (M, 4) float32, as RegionBoxes.boxes[index]
    objectness: np.ndarray  # (N,) every box's, as RegionBoxes.objectness (NMS's swap loop reads them all)
    box: np.ndarray  # (P,) position in `index` of each non-zero prob; (box, cls) ascending
    cls: np.ndarray  # (P,)
    prob: np.ndarray  # (P,) float32


def correct_region_boxes(boxes: Tensor, img_w: int, img_h: int, net_w: int, net_h: int,
                         relative: bool = True) -> Tensor:
    """Undo the letterbox: network-relative (N, 4) xywh -> image-relative (pixels unless `relative`)."""
    fixed = _correct_boxes(boxes.detach().cpu().numpy(), img_w, img_h, net_w, net_h, relative)
    return torch.from_numpy(fixed).to(boxes.device)


def _correct_boxes(boxes: np.ndarray, img_w: int, img_h: int, net_w: int, net_h: int,
                   relative: bool) -> np.ndarray:
    new_w, new_h = letterbox_geometry(img_w, img_h, net_w, net_h)
    x, y, w, h = boxes.T
    # C: b.x = (b.x - (netw - new_w)/2./netw) / ((float)new_w/netw), in double, stored as float.
    x = ((x.astype(np.float64) - (net_w - new_w) / 2.0 / net_w) / float(_F32(new_w) / _F32(net_w))).astype(_F32)
    y = ((y.astype(np.float64) - (net_h - new_h) / 2.0 / net_h) / float(_F32(new_h) / _F32(net_h))).astype(_F32)
    w = w * (_F32(net_w) / _F32(new_w))
    h = h * (_F32(net_h) / _F32(new_h))
    if not relative:
        x, w, y, h = x * _F32(img_w), w * _F32(img_w), y * _F32(img_h), h * _F32(img_h)
    return np.stack([x, y, w, h], 1)


def _region_xywh(v: np.ndarray, biases: np.ndarray, h: int, w: int, index: np.ndarray) -> np.ndarray:
    """Network-relative (M, 4) xywh of the boxes `index` (anchor*H*W + row*W + col) of a (n, entries, H*W)
    region output. Elementwise: a subset is bit-identical to the full set."""
    anchor, cell = np.divmod(index, h * w)
    row, col = np.divmod(cell, w)
    x, y, bw, bh = v[anchor[:, None], np.arange(4), cell[:, None]].T
    anchors = biases.reshape(-1, 2).astype(np.float64)[anchor]
    bw = (np.exp(bw.astype(np.float64)) * anchors[:, 0] / w).astype(_F32)
    bh = (np.exp(bh.astype(np.float64)) * anchors[:, 1] / h).astype(_F32)
    return np.stack([(col.astype(_F32) + x) / _F32(w), (row.astype(_F32) + y) / _F32(h), bw, bh], 1)


def region_candidates(out: Tensor, biases: Tensor, n: int, classes: int, coords: int, img_w: int, img_h: int,
                      net_w: int, net_h: int, thresh: float, hier_thresh: float = 0.5, tree: Tree | None = None,
                      relative: bool = True, background: bool = False) -> RegionCandidates:
    """`get_region_boxes` (without `map`) reduced to its non-zero probs: only boxes with objectness > thresh
    can have one, so only they are read, walked down the tree and decoded. In numpy, on the output's CPU
    copy (Darknet also pulls the region output to the host to decode it): a few hundred small arrays, where
    torch's per-call cost would dominate."""
    v = out.detach().cpu().numpy().reshape(n, coords + 1 + classes, -1)
    _, h, w = out.shape
    f_thresh = _F32(thresh)  # C compares with a float thresh
    scale = np.ones(v.shape[0] * v.shape[2], dtype=_F32) if background else v[:, coords].reshape(-1)
    objectness = np.where(scale > f_thresh, scale, _F32(0))
    rows = np.flatnonzero(objectness)  # with objectness 0 every prob is 0
    anchor, cell = np.divmod(rows, h * w)
    if tree is None:
        probs = scale[rows, None] * v[anchor[:, None], coords + 1 + np.arange(classes), cell[:, None]]
        box, cls = np.nonzero((probs > f_thresh) & (probs != 0))
        prob = probs[box, cls]
    else:
        first = coords + (not background)
        cls = top_prediction_region(v[:, first : first + classes], anchor, cell, tree, hier_thresh)
        box, prob = np.arange(rows.size), scale[rows]  # prob > thresh, so != 0
    kept, box = np.unique(box, return_inverse=True)  # renumber over the rows that keep a prob
    index = rows[kept]
    xywh = _region_xywh(v, biases.detach().cpu().numpy(), h, w, index)
    return RegionCandidates(index, _correct_boxes(xywh, img_w, img_h, net_w, net_h, relative), objectness,
                            box, cls, prob)


def get_region_boxes(out: Tensor, biases: Tensor, n: int, classes: int, coords: int, img_w: int, img_h: int,
                     net_w: int, net_h: int, thresh: float, hier_thresh: float = 0.5,
                     tree: Tree | None = None, map: np.ndarray | Tensor | None = None, relative: bool = True,
                     background: bool = False) -> RegionBoxes:
    """Darknet's `get_region_detections` + `correct_region_boxes` on one activated region output
    (n*(coords+1+classes), H, W). As in C, `map` is only used with a tree; Darknet's averaging with a
    flipped second batch item (`l.batch == 2`, validate's flip) is not part of this per-image decode."""
    device = out.device
    _, h, w = out.shape
    v = out.detach().cpu().numpy().reshape(n, coords + 1 + classes, h * w)
    xywh = _region_xywh(v, biases.detach().cpu().numpy(), h, w, np.arange(n * h * w))
    boxes = torch.from_numpy(_correct_boxes(xywh, img_w, img_h, net_w, net_h, relative)).to(device)
    if tree is not None and map is not None:
        f_thresh = float(_F32(thresh))
        scale = out.new_ones(n * h * w) if background else out.reshape(n, -1, h * w)[:, coords].reshape(-1)
        index = coords + 1 + torch.as_tensor(map, dtype=torch.long, device=device)
        picked = tree_region_output(out, n, coords, classes, tree, background).reshape(n, -1, h * w)[:, index]
        probs = scale[:, None] * picked.transpose(1, 2).reshape(-1, len(index))
        return RegionBoxes(boxes, torch.where(scale > f_thresh, scale, 0.0), torch.where(probs > f_thresh, probs, 0.0))
    c = region_candidates(out, biases, n, classes, coords, img_w, img_h, net_w, net_h, thresh, hier_thresh, tree,
                          relative, background)
    probs = torch.zeros(n * h * w, classes, dtype=out.dtype)
    probs[torch.from_numpy(c.index[c.box]), torch.from_numpy(c.cls)] = torch.from_numpy(c.prob)
    return RegionBoxes(boxes, torch.from_numpy(c.objectness).to(device), probs.to(device))


def tree_region_output(out: Tensor, n: int, coords: int, classes: int, tree: Tree,
                       background: bool = False) -> Tensor:
    """The region output as `get_region_detections` leaves it for a tree: `hierarchy_predictions` runs in
    place on l.output, from entry `coords + !background` (so with background it starts at the obj entry)."""
    channels, h, w = out.shape
    v = out.reshape(n, coords + 1 + classes, h * w)
    first = coords + (not background)
    absolute = hierarchy_predictions(v[:, first : first + classes], tree, dim=1)
    return torch.cat([v[:, :first], absolute, v[:, first + classes :]], 1).reshape(channels, h, w)
