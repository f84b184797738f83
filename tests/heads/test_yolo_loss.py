"""The [yolo] delta against a plain loop version of AlexeyAB's process_batch (slot by slot, truth by truth, as
Darknet walks them), for every option; and the semantics that are easy to state on their own."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from pydarknet.heads.box_loss import Box, box_giou, box_iou, box_iou_kind, dx_box_iou
from pydarknet.heads.yolo import FLT_MAX, YoloHead, YoloParams
from pydarknet.heads.yolo_loss import bbox_line, class_multipliers, report_line, yolo_delta

F = np.float32
ANCHORS = (3, 4, 6, 7, 9, 14, 20, 20, 34, 42, 86, 80)
NET = (96, 64)


def _scalar_box(v: list[float]) -> Box:
    return Box(*(torch.tensor([F(x)]) for x in v))


def _s(t: torch.Tensor) -> float:
    return float(t[0])


def reference_delta(p: YoloParams, out: np.ndarray, truth: np.ndarray, net: tuple[int, int]) -> tuple:
    """process_batch for each image, as loops over Darknet's indices (out: activated (N, A, E, H, W))."""
    out = out.astype(F).copy()
    batch, n, _, h, w = out.shape
    anchors = np.array(p.anchors, F).reshape(-1, 2)
    delta = np.zeros_like(out)
    mult = class_multipliers(p)
    mult = None if mult is None else mult.numpy()
    stats = dict(count=0, tot_iou=0.0, tot_iou_loss=0.0, tot_giou_loss=0.0, total_bbox=0, rewritten=0)

    def pred_box(b: int, a: int, i: int, j: int, anchor: int) -> list[float]:
        x = out[b, a, :4, j, i]
        aw, ah = anchors[anchor]
        if p.new_coords:
            return [(i + x[0]) / F(w), (j + x[1]) / F(h), x[2] * x[2] * 4 * aw / F(net[0]),
                    x[3] * x[3] * 4 * ah / F(net[1])]
        return [(i + x[0]) / F(w), (j + x[1]) / F(h), F(np.exp(np.float64(x[2])) * aw / net[0]),
                F(np.exp(np.float64(x[3])) * ah / net[1])]

    def box_delta(b: int, a: int, i: int, j: int, anchor: int, t: list[float], norm: float) -> tuple:
        pred = pred_box(b, a, i, j, anchor)
        tb, pb = _scalar_box(t), _scalar_box(pred)
        iou, giou = _s(box_iou(pb, tb)), _s(box_giou(pb, tb))
        if (delta[b, a, :4, j, i] != 0).any():
            stats["rewritten"] += 1
        scale = F(2) - F(t[2]) * F(t[3])
        x = out[b, a, :4, j, i]
        if p.iou_loss == "mse":
            aw, ah = anchors[anchor]
            if p.new_coords:
                tw, th = F(np.sqrt(F(t[2]) * net[0] / (4 * aw))), F(np.sqrt(F(t[3]) * net[1] / (4 * ah)))
            else:
                tw, th = F(np.log(F(t[2]) * net[0] / aw)), F(np.log(F(t[3]) * net[1] / ah))
            target = [F(t[0]) * w - i, F(t[1]) * h - j, tw, th]
            d = [scale * (target[k] - x[k]) * F(norm) for k in range(4)]
        else:
            pb = Box(pb.x, pb.y, torch.where(pb.w == 0, 1.0, pb.w), torch.where(pb.h == 0, 1.0, pb.h))
            d = [_s(v) for v in dx_box_iou(pb, tb, p.iou_loss)]
            if not p.new_coords:
                d[2], d[3] = F(d[2] * np.exp(np.float64(x[2]))), F(d[3] * np.exp(np.float64(x[3])))
            d = [F(v) * F(norm) for v in d]
            d = [v if np.isfinite(v) else F(0) for v in d]
            if F(p.max_delta) != F(FLT_MAX):
                d = [min(max(v, -F(p.max_delta)), F(p.max_delta)) for v in d]
        delta[b, a, :4, j, i] += np.array(d, F)
        stats["total_bbox"] += 1
        return iou, giou

    def smooth(y: float) -> F:
        e = F(p.label_smooth_eps)
        return F(y * (F(1) - e) + 0.5 * np.float64(e)) if e else F(y)

    def class_delta(b: int, a: int, i: int, j: int, cls: int) -> None:
        probs, d = out[b, a, 5:, j, i], delta[b, a, 5:, j, i]
        if d[cls] != 0:
            r = smooth(1) - probs[cls]
            if np.isfinite(r):
                d[cls] = r
            if mult is not None:
                d[cls] *= mult[cls]
            return
        if p.focal_loss:
            pt = probs[cls] + F(1e-15)
            grad = -(1 - pt) * (2 * pt * np.log(pt) + pt - 1)
            for c in range(p.classes):
                d[c] = (F(c == cls) - probs[c]) * (F(0.5) * grad)
            return
        for c in range(p.classes):
            r = smooth(float(c == cls)) - probs[c]
            if np.isfinite(r):
                d[c] = r
            if mult is not None and c == cls:
                d[c] *= mult[cls] * F(p.cls_normalizer)

    for b in range(batch):
        rows = []
        for t in range(min(truth.shape[1], p.max_boxes)):
            if truth[b, t, 0] == 0:
                break
            if 0 <= truth[b, t, 4] < p.classes:
                rows.append((t, [F(v) for v in truth[b, t, :4]], int(truth[b, t, 4])))
        for j in range(h):
            for i in range(w):
                for a in range(n):
                    pred = _scalar_box(pred_box(b, a, i, j, p.mask[a]))
                    best_match = best = F(0)
                    best_t = 0
                    for t, tb, _ in rows:
                        if not np.isfinite(out[b, a, 4, j, i]):
                            out[b, a, 4, j, i] = 0
                        match = (out[b, a, 5:, j, i] > F(0.25)).any()
                        iou = F(_s(box_iou(pred, _scalar_box(tb))))
                        if iou > best_match and match:
                            best_match = iou
                        if iou > best:
                            best, best_t = iou, t
                    o = out[b, a, 4, j, i]
                    delta[b, a, 4, j, i] = F(p.obj_normalizer) * (0 - o)
                    if best_match > F(p.ignore_thresh):
                        if p.objectness_smooth:
                            d = F(p.obj_normalizer) * (best_match - o)
                            delta[b, a, 4, j, i] = max(d, delta[b, a, 4, j, i])
                        else:
                            delta[b, a, 4, j, i] = 0
                    if best > F(p.truth_thresh):
                        square = best * best
                        delta[b, a, 4, j, i] = F(p.obj_normalizer) * ((square if p.objectness_smooth else 1) - o)
                        cls = int(truth[b, best_t, 4])
                        class_delta(b, a, i, j, cls)
                        m = F(1) if mult is None else mult[cls]
                        if p.objectness_smooth:
                            delta[b, a, 5 + cls, j, i] = m * (square - out[b, a, 5 + cls, j, i])
                        box_delta(b, a, i, j, p.mask[a], list(truth[b, best_t, :4]), F(p.iou_normalizer) * m)
        for _, tb, cls in rows:
            i, j = min(int(F(tb[0]) * F(w)), w - 1), min(int(F(tb[1]) * F(h)), h - 1)
            shape = _scalar_box([0, 0, tb[2], tb[3]])
            ious = [_s(box_iou(_scalar_box([0, 0, aw / F(net[0]), ah / F(net[1])]), shape)) for aw, ah in anchors]
            best_n, best = 0, 0.0
            for k, v in enumerate(ious):
                if v > best:
                    best_n, best = k, v
            chosen = [best_n] if best_n in p.mask else []
            if F(p.iou_thresh) < 1:
                chosen += [k for k, (aw, ah) in enumerate(anchors) if k in p.mask and k != best_n and _s(box_iou_kind(
                    _scalar_box([0, 0, aw / F(net[0]), ah / F(net[1])]), shape, p.iou_thresh_kind)) > F(p.iou_thresh)]
            for anchor in chosen:
                a = p.mask.index(anchor)
                m = F(1) if mult is None else mult[cls]
                iou, giou = box_delta(b, a, i, j, anchor, tb, F(p.iou_normalizer) * m)
                stats["count"] += 1
                stats["tot_iou"] += iou
                stats["tot_iou_loss"] += 1 - iou
                stats["tot_giou_loss"] += 1 - giou
                o = out[b, a, 4, j, i]
                if not p.objectness_smooth or delta[b, a, 4, j, i] == 0:
                    delta[b, a, 4, j, i] = m * F(p.obj_normalizer) * (1 - o)
                class_delta(b, a, i, j, cls)
        if F(p.iou_thresh) < 1:
            for j in range(h):
                for i in range(w):
                    for a in range(n):
                        if delta[b, a, 4, j, i] != 0:
                            k = int((delta[b, a, 5:, j, i] > 0).sum())
                            if k:
                                delta[b, a, :4, j, i] /= k
    return delta, stats


def _case(p: YoloParams, seed: int, w: int = 6, h: int = 4, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """An activated output and truths: some random, some near predicted boxes (so the ignore and truth
    thresholds trigger), two truths of different classes on one slot, a NaN objectness, a bad class id."""
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(batch, p.n * (5 + p.classes), h, w, generator=g)
    raw.view(batch, p.n, 5 + p.classes, h, w)[:, :, 5:] -= 1.5
    if p.new_coords:
        raw = torch.sigmoid(raw)
    out = YoloHead(p)(raw)
    v = out.view(batch, p.n, 5 + p.classes, h, w)
    v[0, 1, 4, 2, 3] = float("nan")
    truth = torch.zeros(batch, 12, 5)
    anchors = torch.tensor(p.anchors).view(-1, 2)
    for b in range(batch):
        rows = []
        for _ in range(3):  # near what slot (a, j, i) predicts
            a, j, i = (int(torch.randint(s, (1,), generator=g)) for s in (p.n, h, w))
            x, y = (v[b, a, :2, j, i].clamp(0.05, 0.95) + torch.tensor([i, j])) / torch.tensor([w, h])
            aw, ah = anchors[p.mask[a]].tolist()
            cls = int(torch.randint(p.classes, (1,), generator=g))
            rows.append([float(x), float(y), aw / NET[0] * 1.1, ah / NET[1] * 0.9, cls])
        for _ in range(3):
            centre, size = torch.rand(2, generator=g) * 0.9 + 0.05, torch.rand(2, generator=g) * 0.6 + 0.05
            rows.append([*centre.tolist(), *size.tolist(), int(torch.randint(p.classes, (1,), generator=g))])
        rows.append([*rows[0][:4], (rows[0][4] + 1) % p.classes])  # the same box, another class
        rows.append([0.5, 0.5, 0.2, 0.2, p.classes + 3])  # out of range: skipped
        truth[b, : len(rows)] = torch.tensor(rows)
    return out, truth


OPTIONS = {
    "mse": dict(),
    "ciou_iou_thresh": dict(iou_loss="ciou", iou_normalizer=0.07, iou_thresh=0.213, scale_x_y=1.05, max_delta=5.0,
                            ignore_thresh=0.5),
    "giou_smooth": dict(iou_loss="giou", iou_normalizer=0.5, objectness_smooth=True, label_smooth_eps=0.1,
                        counters_per_class=(10, 1, 40, 7, 3), cls_normalizer=0.5, ignore_thresh=0.3),
    "focal_truth_thresh": dict(iou_loss="iou", focal_loss=True, truth_thresh=0.4, ignore_thresh=0.2,
                               obj_normalizer=2.0),
    "new_coords_diou": dict(iou_loss="diou", new_coords=True, scale_x_y=2.0, iou_thresh=0.2, iou_thresh_kind="giou",
                            objectness_smooth=True, max_delta=2.0, truth_thresh=0.5),
    "mse_new_coords": dict(new_coords=True, iou_thresh=0.3, truth_thresh=0.6, ignore_thresh=0.3),
}


def _params(**kw: object) -> YoloParams:
    return YoloParams(classes=5, total=6, mask=(1, 3, 4), anchors=ANCHORS, **kw)


@pytest.mark.parametrize("name", OPTIONS)
@pytest.mark.parametrize("seed", [0, 1])
def test_delta_equals_darknets_loops(name, seed):
    p = _params(**OPTIONS[name])
    out, truth = _case(p, seed)
    found = yolo_delta(p, torch.tensor(p.anchors, dtype=torch.float32), out, truth, NET)
    ref, stats = reference_delta(p, out.view(2, p.n, 5 + p.classes, 4, 6).numpy(), truth.numpy(), NET)
    np.testing.assert_allclose(found.delta.view_as(torch.from_numpy(ref)).numpy(), ref, rtol=1e-5, atol=1e-6)
    for key in ("count", "total_bbox"):
        assert found.stats[key] == stats[key], key
    assert found.stats["rewritten_bbox"] == stats["rewritten"] >= 1  # the two truths on one slot
    for key in ("tot_iou", "tot_iou_loss", "tot_giou_loss"):
        assert found.stats[key] == pytest.approx(stats[key], rel=1e-5, abs=1e-6), key
    squares = float((ref.astype(np.float64) ** 2).sum())
    if p.iou_loss == "mse":
        assert found.cost == pytest.approx(squares, rel=1e-6)
    no_box = float((ref[:, :, 4:].astype(np.float64) ** 2).sum()) * F(p.obj_normalizer)
    assert found.stats["class_loss"] == pytest.approx(no_box / 2, rel=1e-6)
    # a difference of two sums: as exact as the total
    assert found.stats["iou_loss"] == pytest.approx((squares - no_box) / 2, abs=1e-6 * squares)


def test_thresholds_and_rounds_are_exercised():
    """The cases above reach every branch: ignored slots, truth_thresh slots, extra anchors, the averaging,
    several truths on one slot."""
    p = _params(**OPTIONS["focal_truth_thresh"])
    out, truth = _case(p, 0)
    found = yolo_delta(p, torch.tensor(p.anchors, dtype=torch.float32), out, truth, NET)
    d = found.delta.view(2, 3, 10, 4, 6)
    obj = out.view(2, 3, 10, 4, 6)[:, :, 4]
    assert ((d[:, :, 4] == 0) & (obj > 0)).sum() > 5  # ignored
    assert found.stats["total_bbox"] > found.stats["count"]  # slots trained by truth_thresh
    assert found.stats["rewritten_bbox"] >= 1
    q = _params(**OPTIONS["ciou_iou_thresh"])
    out, truth = _case(q, 0)
    found = yolo_delta(q, torch.tensor(q.anchors, dtype=torch.float32), out, truth, NET)
    assert found.stats["count"] > 14  # iou_thresh: more than one anchor for some of the 14 truths


def test_cost_of_iou_losses_is_normalized_mean_iou_loss_plus_class_loss():
    p = _params(**OPTIONS["giou_smooth"])
    out, truth = _case(p, 1)
    found = yolo_delta(p, torch.tensor(p.anchors, dtype=torch.float32), out, truth, NET)
    s = found.stats
    assert found.cost == pytest.approx(0.5 * s["tot_giou_loss"] / s["count"] + 2 * s["class_loss"], rel=1e-6)
    q = dataclasses.replace(p, iou_loss="ciou")  # every other IoU kind uses 1 - IoU
    found = yolo_delta(q, torch.tensor(q.anchors, dtype=torch.float32), out, truth, NET)
    s = found.stats
    assert found.cost == pytest.approx(0.5 * s["tot_iou_loss"] / s["count"] + 2 * s["class_loss"], rel=1e-6)


def test_cls_normalizer_acts_only_with_counters_per_class():
    """delta_yolo_class multiplies by cls_normalizer only together with a class multiplier (AlexeyAB's code)."""
    out, truth = _case(_params(), 0)
    plain = yolo_delta(_params(), torch.tensor(ANCHORS, dtype=torch.float32), out, truth, NET)
    halved = yolo_delta(_params(cls_normalizer=0.5), torch.tensor(ANCHORS, dtype=torch.float32), out, truth, NET)
    assert torch.equal(plain.delta, halved.delta)
    p = _params(counters_per_class=(1, 1, 1, 1, 1), cls_normalizer=0.5)
    scaled = yolo_delta(p, torch.tensor(ANCHORS, dtype=torch.float32), out, truth, NET)
    assert not torch.equal(plain.delta, scaled.delta)
    # max / count, a count below 1 counting as 1, capped at max_delta
    assert class_multipliers(_params(counters_per_class=(10, 0, 40, 4, 3), max_delta=5.0)).tolist() == [4, 5, 1, 5, 5]


def test_no_truth_pulls_every_objectness_down():
    p = _params(obj_normalizer=0.5)
    out, _ = _case(p, 0)
    out = torch.nan_to_num(out)
    found = yolo_delta(p, torch.tensor(ANCHORS, dtype=torch.float32), out, torch.zeros(2, 5, 5), NET)
    d = found.delta.view(2, 3, 10, 4, 6)
    v = out.view(2, 3, 10, 4, 6)
    torch.testing.assert_close(d[:, :, 4], 0.5 * (0 - v[:, :, 4]))
    assert not d[:, :, :4].any() and not d[:, :, 5:].any()
    assert found.stats["count"] == 0
    assert report_line(9, p, found.stats).startswith(
        "v3 (mse loss, Normalizer: (iou: 0.75, obj: 0.50, cls: 1.00) Region 9 Avg (IOU: 0.000000), count: 1, ")


def test_report_lines():
    p = _params(iou_loss="ciou", iou_normalizer=0.07)
    stats = dict(tot_iou=0.5, count=2, loss=3.25, class_loss=3.0, iou_loss=0.25)
    assert report_line(12, p, stats) == ("v3 (iou loss, Normalizer: (iou: 0.07, obj: 1.00, cls: 1.00) Region 12 Avg "
                                         "(IOU: 0.250000), count: 2, class_loss = 3.000000, iou_loss = 0.250000, "
                                         "total_loss = 3.250000 ")
    q = _params(iou_loss="giou", show_details=False)
    assert report_line(3, q, stats).endswith("Region 3 Avg (IOU: 0.250000), count: 2, total_loss = 3.250000 ")
    assert bbox_line(6, 0) == " total_bbox = 6, rewritten_bbox = 0.000000 % "


def test_truth_beyond_max_is_not_read():
    p = _params(max_boxes=2)
    out, truth = _case(p, 0)
    a = yolo_delta(p, torch.tensor(ANCHORS, dtype=torch.float32), out, truth, NET)
    b = yolo_delta(p, torch.tensor(ANCHORS, dtype=torch.float32), out, truth[:, :2], NET)
    assert torch.equal(a.delta, b.delta) and a.stats["count"] <= 4
