"""Darknet's box IoU and non-maximum suppression (`do_nms_sort`, `do_nms_obj`), float32.

Both NMS functions return the detections permuted exactly as Darknet leaves its array (the printed
order), including the unstable "objectness == 0 to the end" swap loop and glibc's stable qsort.
The sorts and suppression loops run in numpy on the few boxes with a non-zero prob (`nms_sort_pairs`),
which is also what `pydarknet.detect` calls directly, without a dense (boxes x classes) matrix.
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


def box_iou(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """IoU of xywh (centre, size) boxes, broadcasting over leading dims; Darknet's float32 `box_iou`.
    Torch tensors or numpy arrays: the same float32 operations, so the same bits."""
    xp = np if isinstance(a, np.ndarray) else torch

    def overlap(x1: Tensor, w1: Tensor, x2: Tensor, w2: Tensor) -> Tensor:
        left = xp.maximum(x1 - w1 / 2, x2 - w2 / 2)
        right = xp.minimum(x1 + w1 / 2, x2 + w2 / 2)
        return right - left

    w = overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
    h = overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    inter = xp.where((w < 0) | (h < 0), np.float32(0) if xp is np else 0.0, w * h)
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


def _overlaps(boxes: np.ndarray, thresh: float) -> np.ndarray:
    """(M, M) IoU > thresh between different boxes (C: float IoU vs float thresh; box_iou is symmetric)."""
    over = box_iou(boxes[:, None], boxes[None]) > np.float32(thresh)
    np.fill_diagonal(over, False)
    return over


def _greedy(over: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Darknet's suppression loop over boxes `at` (rows of the overlap matrix `over`) in sorted order: a
    box still valid invalidates every later one it overlaps. Returns which stay valid."""
    valid = np.ones(at.size, dtype=bool)
    for i in range(at.size):
        if valid[i]:
            valid[i + 1 :] &= ~over[at[i], at[i + 1 :]]
    return valid


def swap_loop_positions(nonzero: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Where `zero_objectness_to_end` puts the boxes `rows` (each with non-zero objectness; `nonzero`:
    every box's objectness != 0): a front box stays, the non-zero boxes past `total` fill the front zeros
    in order, the last box first."""
    total = int(np.count_nonzero(nonzero))
    front_zero = np.flatnonzero(~nonzero[:total])
    back_nonzero = np.flatnonzero(nonzero[total:]) + total
    positions = rows.copy()
    back = rows >= total
    later = back_nonzero.size - np.searchsorted(back_nonzero, rows[back], side="right")  # back non-zeros after it
    positions[back] = front_zero[later]
    return positions


def nms_sort_pairs(boxes: np.ndarray, box: np.ndarray, cls: np.ndarray, prob: np.ndarray,
                   nms_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """`do_nms_sort`'s sorts and suppression on M boxes given in Darknet's array order (after the swap
    loop), by their non-zero probs as (box, class, prob) triples. Returns the order of the boxes after the
    sorts (M,) and which triples the suppression zeroes (P,).

    A stable sort leaves any two boxes in an order that depends only on their keys and their order before,
    so boxes with no non-zero prob may be left out of `boxes`: the others keep their order. Per class k
    that occurs (ascending): a stable sort by prob k (descending; NaN first, as torch sorts), then Darknet's
    greedy loop over the boxes with a non-zero prob k: a box still valid zeroes prob k of every later one
    with IoU > nms_thresh. The sorts never read a zeroed prob (k's sort precedes k's suppression)."""
    order = np.arange(boxes.shape[0])
    dropped = np.zeros(box.shape[0], dtype=bool)
    if not box.size:
        return order, dropped
    # Only boxes with a non-zero prob take part in a suppression: IoU between those.
    with_prob = np.unique(box)
    slot = np.zeros(boxes.shape[0], dtype=np.int64)
    slot[with_prob] = np.arange(with_prob.size)
    over = _overlaps(boxes[with_prob], nms_thresh)
    by_class = np.argsort(cls, kind="stable")
    key = np.zeros(boxes.shape[0], dtype=prob.dtype)
    triple = np.zeros(boxes.shape[0], dtype=np.int64)
    for pairs in np.split(by_class, np.flatnonzero(np.diff(cls[by_class])) + 1):
        key[:] = 0
        key[box[pairs]] = prob[pairs]
        triple[box[pairs]] = pairs
        k = key[order]
        order = order[np.lexsort((-k, ~np.isnan(k)))]
        members = order[key[order] != 0]
        dropped[triple[members[~_greedy(over, slot[members])]]] = True
    return order, dropped


def do_nms_sort_pairs(objectness: np.ndarray, index: np.ndarray, boxes: np.ndarray, box: np.ndarray,
                      cls: np.ndarray, prob: np.ndarray, nms_thresh: float) -> tuple[np.ndarray, np.ndarray]:
    """`do_nms_sort` on the boxes `index` (ascending detection indices of the boxes with a non-zero prob;
    `objectness`: every box's, which the swap loop reads) given as `nms_sort_pairs` takes them: positions in
    `index` of the boxes in Darknet's final order, and which triples the suppression zeroes."""
    before = np.argsort(swap_loop_positions(objectness != 0, index))  # the array order before the sorts
    position = np.empty_like(before)
    position[before] = np.arange(before.size)
    order, dropped = nms_sort_pairs(boxes[before], position[box], cls, prob, nms_thresh)
    return before[order], dropped


def do_nms_sort(boxes: Tensor, objectness: Tensor, probs: Tensor, nms_thresh: float) -> NmsResult:
    """Darknet's `do_nms_sort` (what `detector test` uses): per class, sort by that class's prob
    (descending, stable) and zero the prob of later boxes that overlap a kept one by IoU > nms_thresh.
    Only the non-zero probs of the boxes before `total` are read (`nms_sort_pairs`)."""
    perm, total = zero_objectness_to_end(objectness)
    front = perm[:total]
    p = probs.index_select(0, front)
    rows, cols = torch.nonzero(p, as_tuple=True)
    order, dropped = nms_sort_pairs(boxes.index_select(0, front).cpu().numpy(), rows.cpu().numpy(),
                                    cols.cpu().numpy(), p[rows, cols].cpu().numpy(), nms_thresh)
    order_t = torch.from_numpy(order).to(probs.device)
    index = torch.cat([front[order_t], perm[total:]])
    out = probs.index_select(0, index)
    if dropped.any():
        rank = torch.empty_like(order_t)  # row r of `p` is at position rank[r] of the output
        rank[order_t] = torch.arange(total, device=probs.device)
        zeroed = torch.from_numpy(dropped).to(probs.device)
        out[rank[rows[zeroed]], cols[zeroed]] = 0
    return NmsResult(boxes[index], objectness[index], out, index)


def do_nms_obj(boxes: Tensor, objectness: Tensor, probs: Tensor, nms_thresh: float) -> NmsResult:
    """Darknet's `do_nms_obj`: sort by objectness (descending, stable), and a box overlapping a kept one
    by IoU > nms_thresh loses its objectness and all class probs."""
    perm, total = zero_objectness_to_end(objectness)
    order = perm[:total][torch.argsort(objectness[perm[:total]], descending=True, stable=True)]
    index = torch.cat([order, perm[total:]])
    obj, p = objectness[index].clone(), probs[index].clone()
    # Every box before `total` has a non-zero objectness: all take part.
    valid = _greedy(_overlaps(boxes[order].cpu().numpy(), nms_thresh), np.arange(total))
    dropped = torch.from_numpy(~valid).to(obj.device)
    obj[:total][dropped] = 0
    p[:total][dropped] = 0
    return NmsResult(boxes[index], obj, p, index)
