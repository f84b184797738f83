"""Darknet's IoU and NMS against literal Python ports of the C loops (glibc qsort = stable merge sort)."""

from __future__ import annotations

from unittest.mock import patch

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pydarknet import boxes as boxes_module
from pydarknet.boxes import NMS_KINDS, box_diou_nms, box_iou, nms_diou_sort, nms_obj, nms_sort, swap_loop
from pydarknet.detection import Candidates

f32 = np.float32


def c_intersection(a, b) -> np.float32:
    """box.c's box_intersection, in float."""
    def overlap(x1, w1, x2, w2):
        left = max(f32(x1 - w1 / f32(2)), f32(x2 - w2 / f32(2)))
        right = min(f32(x1 + w1 / f32(2)), f32(x2 + w2 / f32(2)))
        return f32(right - left)

    w, h = overlap(a[0], a[2], b[0], b[2]), overlap(a[1], a[3], b[1], b[3])
    return f32(0) if w < 0 or h < 0 else f32(w * h)


def c_iou(a, b) -> np.float32:
    inter = c_intersection(a, b)
    return f32(inter / f32(f32(f32(a[2] * a[3]) + f32(b[2] * b[3])) - inter))


def c_swap(objectness) -> tuple[list[int], int]:
    order, k, i = list(range(len(objectness))), len(objectness) - 1, 0
    while i <= k:
        if objectness[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
            i -= 1
        i += 1
    return order, k + 1


def c_alexeyab_iou(a, b) -> np.float32:
    """AlexeyAB's box_iou: 0 where the intersection or the union is 0."""
    inter = c_intersection(a, b)
    union = f32(f32(f32(a[2] * a[3]) + f32(b[2] * b[3])) - inter)
    return f32(0) if inter == 0 or union == 0 else f32(inter / union)


def c_box_diounms(a, b, beta: float) -> np.float32:
    """AlexeyAB's box_diounms (box_diou: beta the double 0.6), statement by statement."""
    top = f32(min(f32(a[1] - a[3] / f32(2)), f32(b[1] - b[3] / f32(2))))
    bot = f32(max(f32(a[1] + a[3] / f32(2)), f32(b[1] + b[3] / f32(2))))
    left = f32(min(f32(a[0] - a[2] / f32(2)), f32(b[0] - b[2] / f32(2))))
    right = f32(max(f32(a[0] + a[2] / f32(2)), f32(b[0] + b[2] / f32(2))))
    w, h = f32(right - left), f32(bot - top)
    c = f32(f32(w * w) + f32(h * h))
    iou = c_alexeyab_iou(a, b)
    if c == 0:
        return iou
    d = f32(f32(f32(a[0] - b[0]) * f32(a[0] - b[0])) + f32(f32(a[1] - b[1]) * f32(a[1] - b[1])))
    return f32(iou - f32(float(f32(d / c)) ** beta))


def c_nms_sort(boxes, objectness, probs, thresh, over=lambda a, b, t: c_iou(a, b) > f32(t)):
    order, total = c_swap(objectness)
    dets = [[boxes[i], objectness[i], probs[i].copy(), i] for i in order]
    for k in range(probs.shape[1]):
        dets[:total] = sorted(dets[:total], key=lambda d: -d[2][k])  # stable, like glibc's msort
        for i in range(total):
            if dets[i][2][k] == 0:
                continue
            for j in range(i + 1, total):
                if over(dets[i][0], dets[j][0], thresh):
                    dets[j][2][k] = 0
    return dets


def c_nms_obj(boxes, objectness, probs, thresh):
    order, total = c_swap(objectness)
    dets = [[boxes[i], objectness[i], probs[i].copy(), i] for i in order]
    dets[:total] = sorted(dets[:total], key=lambda d: -d[1])
    for i in range(total):
        if dets[i][1] == 0:
            continue
        for j in range(i + 1, total):
            if dets[j][1] != 0 and c_iou(dets[i][0], dets[j][0]) > f32(thresh):
                dets[j][1] = f32(0)
                dets[j][2][:] = 0
    return dets


@settings(max_examples=500, deadline=None)
@given(st.lists(st.booleans(), max_size=40))
def test_swap_loop(flags):
    perm, total = swap_loop(np.array(flags, dtype=bool))
    assert (perm.tolist(), total) == c_swap(flags)


def random_dets(seed: int, n: int, classes: int):
    rng = np.random.default_rng(seed)
    boxes = (rng.random((n, 4)) * [1, 1, 0.6, 0.6]).astype(np.float32)
    # Coarse values: many ties, in objectness and in class probs.
    objectness = np.where(rng.random(n) < 0.7, np.round(rng.random(n), 1), 0).astype(np.float32)
    probs = np.where((rng.random((n, classes)) < 0.5) & (objectness[:, None] > 0),
                     np.round(rng.random((n, classes)), 1), 0).astype(np.float32)
    return boxes, objectness, probs


def candidates(boxes, objectness, probs) -> Candidates:  # noqa: ANN001
    """The dense arrays as Candidates: the boxes with a non-zero objectness, their non-zero probs."""
    rows = np.flatnonzero(objectness)
    box, cls = np.nonzero(probs[rows])
    return Candidates(len(boxes), rows, boxes[rows], objectness[rows], box, cls, probs[rows][box, cls])


def dense(c: Candidates, classes: int) -> np.ndarray:
    probs = np.zeros((c.index.size, classes), np.float32)
    probs[c.box, c.cls] = c.prob
    return probs


def check_against(ours: Candidates, ref: list, classes: int) -> None:
    """The NMS result is the C loops' array up to `total`: the boxes with a non-zero objectness (the loops
    never move or read the others, which the swap test covers)."""
    total = ours.index.size
    assert ours.index.tolist() == [d[3] for d in ref[:total]]
    assert all(d[1] == 0 for d in ref[total:])
    want_boxes, want_obj, want_probs = (np.float32([d[i] for d in ref[:total]]) for i in range(3))
    np.testing.assert_array_equal(ours.boxes, want_boxes.reshape(total, 4))
    np.testing.assert_array_equal(ours.objectness, want_obj.reshape(total))
    np.testing.assert_array_equal(dense(ours, classes), want_probs.reshape(total, classes))


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 30), st.integers(1, 5),
       st.sampled_from([0.0, 0.3, 0.45, 0.7]))
def test_nms_matches_the_c_loops(seed, n, classes, thresh):
    boxes, objectness, probs = random_dets(seed, n, classes)
    c = candidates(boxes, objectness, probs)
    check_against(nms_sort(c, thresh), c_nms_sort(boxes, objectness, probs, thresh), classes)
    check_against(nms_obj(c, thresh), c_nms_obj(boxes, objectness, probs, thresh), classes)


def test_box_iou_is_darknets_float32_formula():
    rng = np.random.default_rng(0)
    a, b = rng.random((200, 4), dtype=np.float32), rng.random((200, 4), dtype=np.float32)
    a[:50, 2:] = 0  # degenerate: 0/0 = NaN, never > thresh
    ours = box_iou(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_array_equal(ours, [c_iou(x, y) for x, y in zip(a, b, strict=True)])
    pairwise = box_iou(torch.from_numpy(a)[:, None], torch.from_numpy(b)[None])
    assert pairwise.shape == (200, 200) and pairwise[3, 7].item() == c_iou(a[3], b[7])


def test_many_classes_only_sorts_the_present_ones():
    # yolo9000: 9418 columns, one non-zero class per box; order and suppression as with the full loop.
    boxes, objectness, small = random_dets(7, 40, 3)
    probs = np.zeros((40, 9418), dtype=np.float32)
    probs[:, [17, 4000, 9413]] = small
    res = nms_sort(candidates(boxes, objectness, probs), 0.45)
    ref = c_nms_sort(boxes, objectness, small, 0.45)
    total = res.index.size
    assert res.index.tolist() == [d[3] for d in ref[:total]]
    np.testing.assert_array_equal(dense(res, 9418)[:, [17, 4000, 9413]], np.float32([d[2] for d in ref[:total]]))
    assert res.prob.size == np.count_nonzero([d[2] for d in ref])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(0, 30), st.integers(1, 4), st.sampled_from([0.0, 0.3, 0.45]),
       st.sampled_from([0.6, float(f32(0.6)), float(f32(0.9))]))
def test_diou_nms_matches_the_c_loops(seed, n, classes, thresh, beta):
    """AlexeyAB's diounms_sort: do_nms_sort's loops with box_diounms > thresh as the suppression test."""
    boxes, objectness, probs = random_dets(seed, n, classes)
    boxes[: n // 3, :2] = boxes[n // 3 : 2 * (n // 3), :2]  # equal centres: d = 0
    c = candidates(boxes, objectness, probs)
    ref = c_nms_sort(boxes, objectness, probs, thresh, lambda a, b, t: c_box_diounms(a, b, beta) > f32(t))
    check_against(nms_diou_sort(c, thresh, beta), ref, classes)


def test_box_diou_nms_is_alexeyabs_formula():
    rng = np.random.default_rng(1)
    a, b = rng.random((300, 4), dtype=np.float32), rng.random((300, 4), dtype=np.float32)
    a[:40, 2:] = 0  # no area: AlexeyAB's IoU is 0, not NaN
    b[20:60] = a[20:60]  # the same box: c = 0 for the empty ones, d = 0 for the others
    a[60:80, 0] = b[60:80, 0] + 5  # far apart: a negative DIoU
    for beta in (0.6, float(f32(0.6))):
        ours = box_diou_nms(a, b, beta)
        np.testing.assert_array_equal(ours, [c_box_diounms(x, y, beta) for x, y in zip(a, b, strict=True)])
    assert (ours[20:40] == 0).all() and np.allclose(ours[40:60], 1, atol=1e-5) and (ours[60:80] < 0).all()
    assert box_diou_nms(a[:, None], b[None], 0.6).shape == (300, 300)
    assert NMS_KINDS["greedynms"] is NMS_KINDS["diounms"] is nms_diou_sort


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.3, 0.45]))
def test_row_by_row_suppression_matches_the_c_loops(seed, thresh):
    """Past _MATRIX_BOXES boxes the suppression tests one kept box at a time: the same result."""
    boxes, objectness, probs = random_dets(seed, 40, 3)
    c = candidates(boxes, objectness, probs)
    diou = lambda a, b, t: c_box_diounms(a, b, 0.6) > f32(t)  # noqa: E731
    with patch.object(boxes_module, "_MATRIX_BOXES", 0):
        check_against(nms_sort(c, thresh), c_nms_sort(boxes, objectness, probs, thresh), 3)
        check_against(nms_obj(c, thresh), c_nms_obj(boxes, objectness, probs, thresh), 3)
        check_against(nms_diou_sort(c, thresh), c_nms_sort(boxes, objectness, probs, thresh, diou), 3)
