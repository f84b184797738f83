"""Darknet's box IoU and its non-maximum suppressions, on `Candidates` (float32, numpy).

Each NMS returns the candidates permuted exactly as Darknet leaves its detection array (the printed
order), including the unstable "objectness == 0 to the end" swap loop and glibc's stable qsort, with the
probs it zeroes dropped. Only boxes with a non-zero objectness take part in any of them (the swap loop puts
the others after `total`, where no loop reads them), so those are all the candidates hold.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

from pydarknet.detection import Candidates

Nms = Callable[[Candidates, float], Candidates]
Overlap = Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # (box, boxes, thresh) -> suppressed
# Boxes up to which a suppression tests all pairs at once: DIoU's temporaries are ~10 float32 matrices
# (40 MB at 1024); row by row is slower on a few hundred boxes (5x at 300), not past a few thousand.
_MATRIX_BOXES = 1024


def box_intersection_union(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> tuple[Tensor | np.ndarray, ...]:
    """Darknet's float32 `box_intersection` and `box_union` of xywh (centre, size) boxes, broadcasting over
    leading dims. Torch tensors or numpy arrays: the same float32 operations, so the same bits."""
    xp = np if isinstance(a, np.ndarray) else torch

    def overlap(x1: Tensor, w1: Tensor, x2: Tensor, w2: Tensor) -> Tensor:
        left = xp.maximum(x1 - w1 / 2, x2 - w2 / 2)
        right = xp.minimum(x1 + w1 / 2, x2 + w2 / 2)
        return right - left

    w = overlap(a[..., 0], a[..., 2], b[..., 0], b[..., 2])
    h = overlap(a[..., 1], a[..., 3], b[..., 1], b[..., 3])
    inter = xp.where((w < 0) | (h < 0), np.float32(0) if xp is np else 0.0, w * h)
    return inter, a[..., 2] * a[..., 3] + b[..., 2] * b[..., 3] - inter


def box_iou(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> Tensor | np.ndarray:
    """Darknet's float32 `box_iou` (pjreddie's: no guard against an empty union)."""
    inter, union = box_intersection_union(a, b)
    return inter / union


def box_iou_alexeyab(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """AlexeyAB's float32 `box_iou`: 0 where the intersection or the union is 0."""
    inter, union = box_intersection_union(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter == 0) | (union == 0), np.float32(0), inter / union).astype(np.float32)


def swap_loop(nonzero: np.ndarray) -> tuple[np.ndarray, int]:
    """The permutation made by Darknet's swap loop over a detection array whose objectness is non-zero where
    `nonzero` is true, and `total` (how many non-zero come first):

        k = total-1; for(i = 0; i <= k; ++i) if(obj[i] == 0){ swap(i, k); --k; --i; }

    Front zeros are filled, in order, by the non-zero boxes from the end (last first). A zero goes to the
    end (at N-1, N-2, ...) when examined: a front zero, then the zeros pulled in while filling it; the
    zeros left when the scan reaches `total` go in the order total, N-1, N-2, ..."""
    count = nonzero.size
    total = int(np.count_nonzero(nonzero))
    pos = np.arange(count)
    perm = pos.copy()
    front_zero = pos[:total][~nonzero[:total]]
    back = pos[total:][::-1]  # the order in which k meets them
    back_nonzero = nonzero[back]
    perm[front_zero] = back[back_nonzero]
    filled_before = np.cumsum(back_nonzero) - back_nonzero  # the front zero that pulls it in
    sub = 1 + np.arange(back.size)
    if back.size:
        sub[-1] = 0  # position `total`, if zero, is examined before the zeros above it
    back_zero = ~back_nonzero
    items = np.concatenate([front_zero, back[back_zero]])
    keys = np.concatenate([np.arange(front_zero.size) * (count + 1), filled_before[back_zero] * (count + 1)
                           + sub[back_zero]])
    perm[total:] = items[np.argsort(keys, kind="stable")][::-1]
    return perm, total


def _array_order(c: Candidates) -> np.ndarray:
    """The candidates' rows in the order the swap loop leaves them (they are all before `total`)."""
    nonzero = np.zeros(c.count, dtype=bool)
    nonzero[c.index] = True
    perm, _ = swap_loop(nonzero)
    where = np.empty(c.count, dtype=np.int64)
    where[perm] = np.arange(c.count)
    return np.argsort(where[c.index], kind="stable")


def iou_over(a: np.ndarray, b: np.ndarray, thresh: float) -> np.ndarray:
    """IoU > thresh, broadcasting (C: float IoU vs float thresh): Darknet's suppression test."""
    return box_iou(a, b) > np.float32(thresh)


def _greedy_matrix(overlapping: np.ndarray) -> np.ndarray:
    """Darknet's suppression loop over boxes in sorted order, their pairs tested up front (`overlapping[i, j]`:
    box i suppresses box j): a box still valid invalidates every later one it overlaps. Which stay valid."""
    valid = np.ones(len(overlapping), dtype=bool)
    for i in range(len(overlapping)):
        if valid[i]:
            valid[i + 1 :] &= ~overlapping[i, i + 1 :]
    return valid


def _greedy_rows(boxes: np.ndarray, thresh: float, over: Overlap) -> np.ndarray:
    """The same loop testing each box still valid against the later ones still valid when it gets there
    (a second suppression changes nothing): memory linear in the boxes."""
    valid = np.ones(len(boxes), dtype=bool)
    for i in range(len(boxes)):
        if valid[i]:
            later = i + 1 + np.flatnonzero(valid[i + 1 :])
            valid[later[over(boxes[i], boxes[later], thresh)]] = False
    return valid


def _suppression(boxes: np.ndarray, thresh: float, over: Overlap) -> Callable[[np.ndarray], np.ndarray]:
    """`at -> which of boxes[at], in that order, the greedy loop keeps`. Up to _MATRIX_BOXES boxes every pair
    is tested once, up front (each class's loop reads its boxes' pairs); above, row by row, so that memory
    stays linear in the boxes (AlexeyAB's nets at a low threshold keep thousands)."""
    if len(boxes) <= _MATRIX_BOXES:
        matrix = over(boxes[:, None], boxes[None], thresh)
        return lambda at: _greedy_matrix(matrix[np.ix_(at, at)])
    return lambda at: _greedy_rows(boxes[at], thresh, over)


def sort_pairs(boxes: np.ndarray, box: np.ndarray, cls: np.ndarray, prob: np.ndarray,
               nms_thresh: float, over: Overlap = iou_over) -> tuple[np.ndarray, np.ndarray]:
    """`do_nms_sort`'s sorts and suppression on M boxes given in array order (after the swap loop), by their
    non-zero probs as (box, class, prob) triples. Returns the order of the boxes after the sorts (M,) and
    which triples the suppression zeroes (P,). `over(a, b, thresh)` is the suppression test of a kept box
    against later ones (Darknet's IoU > thresh; AlexeyAB's DIoU NMS passes its own).

    A stable sort leaves any two boxes in an order that depends only on their keys and their order before,
    so boxes with no non-zero prob may be left out of `boxes`: the others keep their order. Per class k
    that occurs (ascending): a stable sort by prob k (descending; NaN first, as torch sorts), then Darknet's
    greedy loop over the boxes with a non-zero prob k: a box still valid zeroes prob k of every later one
    it overlaps. The sorts never read a zeroed prob (k's sort precedes k's suppression)."""
    order = np.arange(boxes.shape[0])
    dropped = np.zeros(box.shape[0], dtype=bool)
    if not box.size:
        return order, dropped
    # Only boxes with a non-zero prob take part in a suppression.
    with_prob = np.unique(box)
    slot = np.zeros(boxes.shape[0], dtype=np.int64)
    slot[with_prob] = np.arange(with_prob.size)
    keeps = _suppression(boxes[with_prob], nms_thresh, over)
    by_class = np.argsort(cls, kind="stable")
    key = np.zeros(boxes.shape[0], dtype=prob.dtype)
    triple = np.zeros(boxes.shape[0], dtype=np.int64)
    for pairs in np.split(by_class, np.flatnonzero(np.diff(cls[by_class])) + 1):
        key[:] = 0
        key[box[pairs]] = prob[pairs]
        triple[box[pairs]] = pairs
        k = key[order]
        order = order[np.lexsort((-k, ~np.isnan(k)))]
        members = order[key[order] != 0]  # only boxes with a non-zero prob k take part
        dropped[triple[members[~keeps(slot[members])]]] = True
    return order, dropped


def box_diou_nms(a: np.ndarray, b: np.ndarray, beta: float) -> np.ndarray:
    """AlexeyAB's `box_diounms` of float32 xywh boxes, broadcasting: IoU - (d/c)^beta, d the squared
    distance of the centres, c the squared diagonal of the smallest box enclosing both (the IoU alone
    where c is 0). Float32 as in C, the power in double (`pow`); its IoU is 0 where the intersection or
    the union is 0. Its `box_diou` is this with beta = 0.6 (a double there, a float in box_diounms)."""
    half_a, half_b = a[..., 2:] / 2, b[..., 2:] / 2
    low = np.fmin(a[..., :2] - half_a, b[..., :2] - half_b)  # C's fmin/fmax: a NaN loses
    high = np.fmax(a[..., :2] + half_a, b[..., :2] + half_b)
    w, h = high[..., 0] - low[..., 0], high[..., 1] - low[..., 1]
    c = w * w + h * h
    iou = box_iou_alexeyab(a, b)
    with np.errstate(invalid="ignore", divide="ignore"):
        dx, dy = a[..., 0] - b[..., 0], a[..., 1] - b[..., 1]
        u = np.power(((dx * dx + dy * dy) / c).astype(np.float64), beta).astype(np.float32)
    return np.where(c == 0, iou, iou - u)


def _diou_over(beta: float) -> Overlap:
    def over(a: np.ndarray, b: np.ndarray, thresh: float) -> np.ndarray:
        """DIoU > thresh, broadcasting (float vs float thresh)."""
        return box_diou_nms(a, b, beta) > np.float32(thresh)

    return over


def _nms_sort_by(c: Candidates, thresh: float, over: Overlap) -> Candidates:
    before = _array_order(c)
    inverse = np.empty_like(before)
    inverse[before] = np.arange(before.size)
    order, dropped = sort_pairs(c.boxes[before], inverse[c.box], c.cls, c.prob, thresh, over)
    return c.rows(before[order], ~dropped)


def nms_sort(c: Candidates, thresh: float) -> Candidates:
    """Darknet's `do_nms_sort` (what `detector test` and `valid` use): per class, sort by that class's prob
    (descending, stable) and zero the prob of later boxes that overlap a kept one by IoU > thresh."""
    return _nms_sort_by(c, thresh, iou_over)


def nms_diou_sort(c: Candidates, thresh: float, beta: float = 0.6) -> Candidates:
    """AlexeyAB's `diounms_sort` for nms_kind=diounms (beta: the layer's float beta_nms) and, with the
    default beta of 0.6, for greedynms (it tests `box_diou`, whose exponent is the double 0.6): `do_nms_sort`
    with the suppression test DIoU > thresh."""
    return _nms_sort_by(c, thresh, _diou_over(beta))


def nms_obj(c: Candidates, thresh: float) -> Candidates:
    """Darknet's `do_nms_obj` (its demo and recall): sort by objectness (descending, stable), and a box
    overlapping a kept one by IoU > thresh loses its objectness and all class probs."""
    before = _array_order(c)
    order = before[np.argsort(-c.objectness[before], kind="stable")]
    valid = _suppression(c.boxes[order], thresh, iou_over)(np.arange(order.size))
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return c.rows(order, valid[rank[c.box]], np.where(valid, c.objectness[order], np.float32(0)))


# The NMS functions by name: Darknet's two and AlexeyAB's nms_kind= ones (diounms with beta_nms=0.6: the
# head binds its own beta, see heads/yolo.py).
NMS_KINDS: dict[str, Nms] = {"sort": nms_sort, "obj": nms_obj, "greedynms": nms_diou_sort,
                             "diounms": nms_diou_sort}
