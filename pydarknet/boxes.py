"""Darknet's box IoU and non-maximum suppression (`do_nms_sort`, `do_nms_obj`), float32, vectorized.

Both NMS functions return the detections permuted exactly as Darknet leaves its array (the printed
order), including the unstable "objectness == 0 to the end" swap loop and glibc's stable qsort.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor


class NmsResult(NamedTuple):
    boxes: Tensor  # (N, 4) in Darknet's final array order
    objectness: Tensor  # (N,)
    probs: Tensor  # (N, classes), suppressed entries set to 0
    index: Tensor  # (N,) long: each row's index before NMS


def box_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU of xywh (centre, size) boxes, broadcasting over leading dims; Darknet's float32 `box_iou`."""
    def overlap(x1: Tensor, w1: Tensor, x2: Tensor, w2: Tensor) -> Tensor:
        left = torch.maximum(x1 - w1 / 2, x2 - w2 / 2)
        right = torch.minimum(x1 + w1 / 2, x2 + w2 / 2)
        return right - left

    w = overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
    h = overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    inter = torch.where((w < 0) | (h < 0), 0.0, w * h)
    union = a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter
    return inter / union


def zero_objectness_to_end(objectness: Tensor) -> tuple[Tensor, int]:
    """The permutation made by Darknet's swap loop, and `total` (how many non-zero come first):

        k = total-1; for(i = 0; i <= k; ++i) if(obj[i] == 0){ swap(i, k); --k; --i; }

    Front zeros are filled, in order, by the non-zero boxes from the end (last first). A zero goes to the
    end (at N-1, N-2, ...) when examined: a front zero, then the zeros pulled in while filling it; the
    zeros left when the scan reaches `total` go in the order total, N-1, N-2, ..."""
    count = objectness.numel()
    device = objectness.device
    nonzero = objectness != 0
    total = int(nonzero.sum())
    pos = torch.arange(count, device=device)
    perm = pos.clone()
    front_zero = pos[(pos < total) & ~nonzero]
    back = pos[total:].flip(0)  # the order in which k meets them
    back_nonzero = nonzero[back]
    perm[front_zero] = back[back_nonzero]
    filled_before = torch.cumsum(back_nonzero, 0) - back_nonzero.long()  # front zero that pulls it in
    sub = 1 + torch.arange(back.numel(), device=device)
    if back.numel():
        sub[-1] = 0  # position `total`, if zero, is examined before the zeros above it
    back_zero = ~back_nonzero
    items = torch.cat([front_zero, back[back_zero]])
    keys = torch.cat([torch.arange(front_zero.numel(), device=device) * (count + 1),
                      filled_before[back_zero] * (count + 1) + sub[back_zero]])
    perm[total:] = items[torch.argsort(keys)].flip(0)
    return perm, total


def _overlaps(boxes: Tensor, thresh: float) -> Tensor:
    """(M, M) IoU > thresh between different boxes (C: float IoU vs float thresh; box_iou is symmetric)."""
    return (box_iou(boxes[:, None], boxes[None]) > float(np.float32(thresh))).fill_diagonal_(False)


def _suppressed(over: Tensor, rows: Tensor, valid: Tensor) -> Tensor:
    """Darknet's greedy loop for K sorted lists at once: `rows` (K, M) index the boxes of `over` in sorted
    order, `valid` where the prob is non-zero. Walking i in order, a still-valid i zeroes every later j
    with IoU > thresh. Returns the (K, M) mask of zeroed entries.

    One step per position, on (K, boxes) masks kept in box order: a step may clear every box that
    overlaps the current one, because an earlier box that overlaps it and is still valid would already
    have zeroed it."""
    keep = torch.zeros(rows.shape[0], over.shape[0], dtype=torch.bool, device=over.device)
    keep.scatter_(1, rows, valid)
    for i in range(rows.shape[1]):
        current = rows[:, i]
        keep &= ~(over.index_select(0, current) & keep.gather(1, current[:, None]))
    return valid & ~keep.gather(1, rows)


def do_nms_sort(boxes: Tensor, objectness: Tensor, probs: Tensor, nms_thresh: float) -> NmsResult:
    """Darknet's `do_nms_sort` (what `detector test` uses): per class, sort by that class's prob
    (descending, stable) and zero the prob of later boxes that overlap a kept one by IoU > nms_thresh.

    A class with no non-zero prob leaves the order unchanged (stable sort of equal keys), so only the
    classes that occur are sorted; the sorts do not depend on suppression (each zeroes its own column
    after sorting by it), so all suppressions run batched once the orders are known."""
    perm, total = zero_objectness_to_end(objectness)
    front = perm[:total]
    p = probs.index_select(0, front)
    active = torch.nonzero(p.abs().sum(0))[:, 0]  # fast column reduction; also fine with no rows
    order = torch.arange(total, device=probs.device)
    orders = []
    for k in active.tolist():
        order = order[torch.argsort(p[order, k], descending=True, stable=True)]
        orders.append(order)
    index = torch.cat([front[order], perm[total:]])
    out = probs.index_select(0, index)  # the one pass over all rows; the rest reads the front rows only
    if orders:
        sorted_rows = torch.stack(orders)  # (K, total): rows of `p` in the order after class k's sort
        valid = p[sorted_rows, active[:, None]] != 0
        width = int(valid.any(0).nonzero().max()) + 1  # later columns hold no non-zero prob
        rows, valid = sorted_rows[:, :width], valid[:, :width]
        dropped = _suppressed(_overlaps(boxes[front], nms_thresh), rows, valid)
        # Row r of `p` is at position rank[r] of the output.
        rank = torch.empty_like(order)
        rank[order] = torch.arange(total, device=probs.device)
        out[rank[rows[dropped]], active[:, None].expand_as(rows)[dropped]] = 0
    return NmsResult(boxes[index], objectness[index], out, index)


def do_nms_obj(boxes: Tensor, objectness: Tensor, probs: Tensor, nms_thresh: float) -> NmsResult:
    """Darknet's `do_nms_obj`: sort by objectness (descending, stable), and a box overlapping a kept one
    by IoU > nms_thresh loses its objectness and all class probs."""
    perm, total = zero_objectness_to_end(objectness)
    order = perm[:total][torch.argsort(objectness[perm[:total]], descending=True, stable=True)]
    index = torch.cat([order, perm[total:]])
    obj, p = objectness[index].clone(), probs[index].clone()
    valid = obj[None, :total] != 0
    dropped = _suppressed(_overlaps(boxes[order], nms_thresh), torch.arange(total, device=obj.device)[None],
                          valid)[0]
    obj[:total][dropped] = 0
    p[:total][dropped] = 0
    return NmsResult(boxes[index], obj, p, index)
