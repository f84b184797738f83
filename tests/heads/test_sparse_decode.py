"""The sparse decode (`RegionHead.candidates` + `nms_sort`, what the detector runs) against the
straightforward dense one: the (boxes x classes) prob matrix as Darknet fills it, Darknet's NMS loops over
all of it, and the rows with a prob left. Random region outputs with coarse values, so that objectness,
probs and boxes tie, equal the threshold, or are zero."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT
from pydarknet.boxes import box_iou, nms_sort, sort_pairs, swap_loop
from pydarknet.detection import Candidates, Detection
from pydarknet.heads import Frame
from pydarknet.heads.region import RegionHead, RegionParams
from pydarknet.image import letterbox_geometry
from pydarknet.wordtree import hierarchy_predictions, hierarchy_top_prediction, read_tree

TREE_9K = read_tree(ROOT / "data" / "9k.tree")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    """Four groups: roots 0-1, children of 0 (2-4), children of 2 (5-6), children of 1 (7)."""
    path = tmp_path_factory.mktemp("tree") / "small.tree"
    path.write_text("".join(f"n{i} {p}\n" for i, p in enumerate([-1, -1, 0, 0, 0, 2, 2, 1])))
    return read_tree(path)


def dense_reference(out: torch.Tensor, biases: torch.Tensor, n: int, classes: int, img_w: int, img_h: int,
                    net_w: int, net_h: int, thresh: float, hier: float, nms: float, tree, background: bool):  # noqa: ANN001
    """`get_region_detections` written out over every box and class, then dense NMS and `detections`."""
    _, h, w = out.shape
    v = out.reshape(n, 5 + classes, h * w)
    cell = torch.arange(h * w)
    col, row = (cell % w).float(), (cell // w).float()
    anchors = biases.reshape(n, 2).double()
    bx, by = (col + v[:, 0]) / w, (row + v[:, 1]) / h
    bw = (torch.exp(v[:, 2].double()) * anchors[:, :1] / w).float()
    bh = (torch.exp(v[:, 3].double()) * anchors[:, 1:] / h).float()
    new_w, new_h = letterbox_geometry(img_w, img_h, net_w, net_h)
    bx = ((bx.double() - (net_w - new_w) / 2.0 / net_w) / float(np.float32(new_w) / np.float32(net_w))).float()
    by = ((by.double() - (net_h - new_h) / 2.0 / net_h) / float(np.float32(new_h) / np.float32(net_h))).float()
    bw, bh = bw * float(np.float32(net_w) / np.float32(new_w)), bh * float(np.float32(net_h) / np.float32(new_h))
    boxes = torch.stack([bx, by, bw, bh], 2).reshape(-1, 4)
    t = float(np.float32(thresh))
    scale = torch.ones(n * h * w) if background else v[:, 4].reshape(-1)
    objectness = torch.where(scale > t, scale, 0.0)
    if tree is None:
        probs = scale[:, None] * v[:, 5:].transpose(1, 2).reshape(-1, classes)
        probs = torch.where((probs > t) & (objectness[:, None] != 0), probs, 0.0)
    else:
        first = 4 + (not background)
        absolute = hierarchy_predictions(v[:, first : first + classes].transpose(1, 2).reshape(-1, classes), tree)
        top = hierarchy_top_prediction(absolute, tree, hier)
        probs = torch.zeros(n * h * w, classes)
        keep = torch.nonzero(scale > t)[:, 0]
        probs[keep, top[keep]] = scale[keep]
    index = torch.arange(n * h * w)
    if nms > 0:
        boxes, objectness, probs, index = loop_nms_sort(boxes, objectness, probs, nms)
    return dense_detections(boxes, objectness, probs, index, thresh)


def dense_detections(boxes, objectness, probs, index, thresh: float) -> list[Detection]:  # noqa: ANN001
    """The rows with some prob > thresh, in array order."""
    found = []
    for b, o, row, i in zip(boxes.tolist(), objectness.tolist(), probs, index.tolist()):
        cls = torch.nonzero(row > float(np.float32(thresh)))[:, 0].tolist()
        if cls:
            found.append(Detection(tuple(b), o, cls, row[cls].tolist(), i))
    return found


def loop_nms_sort(boxes: torch.Tensor, objectness: torch.Tensor, probs: torch.Tensor, thresh: float):
    """`do_nms_sort`'s loops as C runs them (sorted() is stable, as glibc's qsort); a class whose probs are
    all zero is skipped: its sort keeps the order and its loop zeroes nothing."""
    perm, total = swap_loop(objectness.numpy() != 0)
    front, p = perm[:total].tolist(), probs.numpy().copy()
    over = (box_iou(boxes[:, None], boxes[None]) > np.float32(thresh)).numpy()
    for k in np.flatnonzero(p.any(0)):
        front.sort(key=lambda r: -p[r, k])  # noqa: B023 - used at once
        for i, a in enumerate(front):
            if p[a, k] != 0:
                for b in front[i + 1 :]:
                    if over[a, b]:
                        p[b, k] = 0
    index = torch.tensor(front + perm[total:].tolist(), dtype=torch.long)
    return boxes[index], objectness[index], torch.from_numpy(p)[index], index


def random_output(seed: int, n: int, classes: int, h: int, w: int, tree: bool, shared: bool = False) -> torch.Tensor:
    """`shared`: every box gets the class values of the first, so that the WordTree walks end in one class."""
    rng = np.random.default_rng(seed)
    v = np.empty((n, 5 + classes, h * w), dtype=np.float32)
    v[:, :2] = rng.integers(0, 5, (n, 2, h * w)) / 4  # few distinct centres and sizes: boxes that overlap,
    v[:, 2:4] = rng.integers(0, 3, (n, 2, h * w)) / 2  # some equal (IoU 1)
    v[:, 4] = rng.choice([0, 0.2, 0.25, 0.3, 0.5, 0.6, 0.9, 1], (n, h * w))  # = thresh, zero, ties
    levels = [0, 0.1, 0.25, 0.5, 0.8, 1] if tree else [0, 0.25, 0.3, 0.5, 0.6, 1]
    v[:, 5:] = rng.choice(levels, (n, classes, h * w))
    if shared:
        v[:, 5:] = v[:1, 5:, :1]
    return torch.from_numpy(v.reshape(n * (5 + classes), h, w))


def fake_head(n: int, classes: int, tree, background: bool) -> RegionHead:  # noqa: ANN001
    anchors = [1.0, 1.0, 1.5, 1.0, 1.0, 1.5][: 2 * n]
    return RegionHead(RegionParams(n, classes, anchors=anchors, softmax=True, background=background), tree)


FRAME = Frame(80, 60, 64, 32, letterbox=True)


def sparse(head: RegionHead, out: torch.Tensor, thresh: float, hier: float, nms: float) -> list[Detection]:
    c = head.candidates(out, FRAME, thresh, hier)
    return (nms_sort(c, nms) if nms > 0 else c).detections()


def as_tuples(dets: list) -> list:
    return [(d.bbox, d.objectness, d.classes, d.probs, d.index) for d in dets]


def check(seed: int, classes: int, tree, thresh: float, nms: float, hier: float, background: bool,  # noqa: ANN001
          h: int = 3, w: int = 4, n: int = 3, shared: bool = False) -> None:
    out = random_output(seed, n, classes, h, w, tree is not None, shared)
    head = fake_head(n, classes, tree, background)
    ours = sparse(head, out, thresh, hier, nms)
    ref = dense_reference(out, head.biases, n, classes, 80, 60, 64, 32, thresh, hier, nms, tree, background)
    assert as_tuples(ours) == as_tuples(ref)


THRESHOLDS = st.sampled_from([0.0, 0.2, 0.25, 0.3, 0.5, 0.6])
NMS = st.sampled_from([0.0, 0.3, 0.45, 0.9])


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 6), THRESHOLDS, NMS, st.booleans())
def test_softmax_region_matches_dense(seed, classes, thresh, nms, background):
    check(seed, classes, None, thresh, nms, 0.5, background)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 2**32 - 1), THRESHOLDS, NMS, st.sampled_from([0.0, 0.3, 0.5]), st.booleans())
def test_small_tree_region_matches_dense(small_tree, seed, thresh, nms, hier, background):
    check(seed, small_tree.n, small_tree, thresh, nms, hier, background)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize(("thresh", "hier"), [(0.25, 0.5), (0.5, 0.5), (0.2, 0.1)])
def test_9k_tree_region_matches_dense(seed, thresh, hier):
    check(seed, TREE_9K.n, TREE_9K, thresh, 0.45, hier, False, h=2, w=3, shared=seed % 2 == 1)


def test_no_candidates_and_no_nms():
    out = random_output(1, 3, 4, 3, 4, False)
    head = fake_head(3, 4, None, False)
    assert sparse(head, out, 1.0, 0.5, 0.45) == []  # nothing > 1
    c = head.candidates(out, FRAME, 1.0)
    assert c.index.size == c.box.size == 0 and c.boxes.shape == (0, 4) and c.count == 36
    dets = sparse(head, out, 0.25, 0.5, 0.0)  # no NMS: array order
    assert [d.index for d in dets] == sorted(d.index for d in dets) and dets


@settings(max_examples=300, deadline=None)
@given(st.lists(st.booleans(), max_size=40))
def test_nms_starts_from_where_the_swap_loop_puts_boxes(flags):
    """With equal probs and nothing overlapping, do_nms_sort's stable sort keeps the swap loop's order."""
    nonzero = np.array(flags, dtype=bool)
    rows = np.flatnonzero(nonzero)
    boxes = np.stack([rows * 10.0, np.zeros(rows.size), np.ones(rows.size), np.ones(rows.size)], 1).astype(np.float32)
    c = Candidates(len(flags), rows, boxes, np.ones(rows.size, np.float32), np.arange(rows.size),
                   np.zeros(rows.size, np.int64), np.full(rows.size, .5, np.float32))
    perm, total = swap_loop(nonzero)
    assert nms_sort(c, 0.45).index.tolist() == perm[:total].tolist()


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 25), st.integers(1, 4), st.sampled_from([0.3, 0.45, 0.7]))
def test_boxes_without_probs_can_be_left_out(seed, m, classes, thresh):
    rng = np.random.default_rng(seed)
    boxes = (rng.integers(0, 4, (m, 4)) / 4 + [0, 0, 0.25, 0.25]).astype(np.float32)
    probs = np.where(rng.random((m, classes)) < 0.4, rng.choice([0.3, 0.5, 0.9], (m, classes)), 0).astype(np.float32)
    box, cls = np.nonzero(probs)
    order, dropped = sort_pairs(boxes, box, cls, probs[box, cls], thresh)
    assert sorted(order.tolist()) == list(range(m))
    with_prob = np.unique(box)
    sub_order, sub_dropped = sort_pairs(boxes[with_prob], np.searchsorted(with_prob, box), cls,
                                            probs[box, cls], thresh)
    assert with_prob[sub_order].tolist() == [b for b in order.tolist() if b in set(with_prob.tolist())]
    assert sub_dropped.tolist() == dropped.tolist()
