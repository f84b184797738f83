"""AlexeyAB's [yolo] training delta, cost and printed line (`forward_yolo_layer` / `process_batch`, train mode).

Darknet walks, per image, (1) every slot (anchor, cell) against every truth: the no-object delta, the
ignore_thresh / truth_thresh rules; (2) every truth in order: its best anchor (and with iou_thresh < 1 every
other anchor of the layer close enough to it) at the truth's cell gets box, objectness and class deltas, box
deltas accumulating; (3) with iou_thresh < 1, each box delta divided by the number of classes pulled up at
its slot. Pass 1 is per slot and batched here; pass 2 is batched in "rounds": round r holds each assignment
that has r earlier assignments to the same slot, so rounds touch distinct slots and running them in order
reproduces Darknet's read-after-write sequence (a class already pulled up, an objectness already set).

Float vs double follows the C code (`exp`, `log`, `sqrt`, `pow` in double, rounded to float; the rest float).
Darknet's backward adds this delta to the previous layer's delta unchanged: no derivative of the logistic
(see `YoloHead.delta_to_input`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from pydarknet.heads import HeadDelta, write_rounds
from pydarknet.heads.box_loss import Box, box_giou, box_iou, box_iou_kind, dx_box_iou
from pydarknet.heads.yolo import FLT_MAX, YoloParams
from pydarknet.layers.batchnorm import batch_lane_sum, darknet_order

CLASS_MATCH_THRESH = 0.25  # compare_yolo_class: a slot "matches" a truth if any class prob exceeds this
FOCAL_ALPHA = 0.5


def _f32(v: float) -> float:
    return float(np.float32(v))


def class_multipliers(params: YoloParams) -> Tensor | None:
    """get_classes_multipliers: max(counters) / counters[i] (counters below 1 count as 1), capped at max_delta."""
    if params.counters_per_class is None:
        return None
    counters = np.maximum(np.array(params.counters_per_class, np.float32), 1)
    return torch.from_numpy(np.minimum(counters.max() / counters, np.float32(params.max_delta)))


@dataclass
class _Grid:
    """One [yolo] output seen as slots: `out` (N, A, E, cells) with E = 4 + 1 + classes, the network size."""

    out: Tensor
    w: int
    h: int
    net_w: int
    net_h: int
    anchors: Tensor  # (total, 2) in pixels
    new_coords: bool

    def box(self, raw: Tensor, anchor: Tensor, col: Tensor, row: Tensor) -> Box:
        """get_yolo_box of raw (..., 4) entries with anchors (..., 2) at cells (col, row)."""
        aw, ah = anchor[..., 0], anchor[..., 1]
        x = (col + raw[..., 0]) / self.w
        y = (row + raw[..., 1]) / self.h
        if self.new_coords:
            w = raw[..., 2] * raw[..., 2] * 4 * aw / self.net_w
            h = raw[..., 3] * raw[..., 3] * 4 * ah / self.net_h
        else:
            w = (torch.exp(raw[..., 2].double()) * aw.double() / self.net_w).float()
            h = (torch.exp(raw[..., 3].double()) * ah.double() / self.net_h).float()
        return Box(x, y, w, h)

    def anchor_shapes(self) -> Box:
        """Every anchor as a box at the origin, relative to the network (the best-anchor search)."""
        zero = torch.zeros(len(self.anchors), device=self.out.device)
        return Box(zero, zero, self.anchors[:, 0] / self.net_w, self.anchors[:, 1] / self.net_h)


def _box_delta(grid: _Grid, p: YoloParams, raw: Tensor, anchor: Tensor, col: Tensor, row: Tensor, truth: Box,
               normalizer: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """delta_yolo_box's contribution (K, 4) for slots with `raw` (K, 4) entries, and the IoU and GIoU of its
    predicted box (the line's IOU and the giou loss)."""
    pred = grid.box(raw, anchor, col, row)
    iou, giou = box_iou(pred, truth), box_giou(pred, truth)
    scale = 2 - truth.w * truth.h
    if p.iou_loss == "mse":
        aw, ah = anchor[..., 0], anchor[..., 1]
        if p.new_coords:
            tw = torch.sqrt((truth.w * grid.net_w / (4 * aw)).double()).float()
            th = torch.sqrt((truth.h * grid.net_h / (4 * ah)).double()).float()
        else:
            tw = torch.log((truth.w * grid.net_w / aw).double()).float()
            th = torch.log((truth.h * grid.net_h / ah).double()).float()
        target = torch.stack([truth.x * grid.w - col, truth.y * grid.h - row, tw, th], -1)
        return scale[:, None] * (target - raw) * normalizer[:, None], iou, giou
    # dx_box_iou divides by the sizes: a zero-size prediction counts as 1 there
    pred = Box(pred.x, pred.y, torch.where(pred.w == 0, 1.0, pred.w), torch.where(pred.h == 0, 1.0, pred.h))
    dx, dy, dw, dh = dx_box_iou(pred, truth, p.iou_loss)
    if not p.new_coords:  # the exp of w, h: its derivative, as a double product
        dw = (dw.double() * torch.exp(raw[:, 2].double())).float()
        dh = (dh.double() * torch.exp(raw[:, 3].double())).float()
    d = torch.stack([dx, dy, dw, dh], -1) * normalizer[:, None]
    d = torch.where(torch.isfinite(d), d, 0.0)  # fix_nan_inf
    if _f32(p.max_delta) != _f32(FLT_MAX):
        d = d.clamp(-_f32(p.max_delta), _f32(p.max_delta))
    return d, iou, giou


def _smoothed(y_true: Tensor, eps: float) -> Tensor:
    """label_smooth_eps: y * (1 - eps) + 0.5 * eps, the last sum in double."""
    if not eps:
        return y_true
    e = _f32(eps)
    return ((y_true * _f32(1 - np.float32(e))).double() + 0.5 * e).float()


def _class_delta(p: YoloParams, probs: Tensor, current: Tensor, label: Tensor,
                 multipliers: Tensor | None) -> Tensor:
    """delta_yolo_class on K slots: `probs`, `current` (K, classes), `label` (K,). A slot whose class entry is
    already non-zero (an earlier truth of this class) only gets that entry again; otherwise every class is
    set (focal_loss: scaled by Darknet's focal gradient). A non-finite y - p leaves the entry as it was."""
    k = torch.arange(len(label), device=probs.device)
    onehot = torch.zeros_like(probs)
    onehot[k, label] = 1.0
    p_true = probs[k, label]
    mult = multipliers.to(probs.device)[label] if multipliers is not None else None

    # already written: only the class entry
    again = _smoothed(torch.ones_like(p_true), p.label_smooth_eps) - p_true
    again = torch.where(torch.isfinite(again), again, current[k, label])
    if mult is not None:
        again = again * mult
    written = current.clone()
    written[k, label] = again

    if p.focal_loss:
        pt = p_true + np.float32(1e-15)
        grad = -(1 - pt) * (2 * pt * torch.log(pt) + pt - 1)
        fresh = (onehot - probs) * (FOCAL_ALPHA * grad)[:, None]
    else:
        fresh = _smoothed(onehot, p.label_smooth_eps) - probs
        fresh = torch.where(torch.isfinite(fresh), fresh, current)
        if mult is not None:
            fresh[k, label] = fresh[k, label] * (mult * _f32(p.cls_normalizer))
    return torch.where((current[k, label] != 0)[:, None], written, fresh)


def _truth_rows(truth: Tensor, p: YoloParams) -> tuple[Tensor, Tensor]:
    """(N, T, 5) rows Darknet reads (the first `max` rows, up to the first x == 0) and which of them count
    (class in range; Darknet skips the others)."""
    rows = truth.detach().float()[:, : p.max_boxes, :5]
    listed = (rows[..., 0] != 0).int().cummin(1).values.bool()
    longest = int(listed.sum(1).max()) if listed.numel() else 0
    rows, listed = rows[:, :longest], listed[:, :longest]  # the zero rows after every list: never read
    label = rows[..., 4]
    return rows, listed & (label >= 0) & (label < p.classes)


def yolo_delta(params: YoloParams, biases: Tensor, output: Tensor, truth: Tensor, net_size: tuple[int, int],
               class_map: np.ndarray | None = None) -> HeadDelta:
    """The delta, cost and stats of one [yolo] layer for its activated (N, A*(5+classes), H, W) `output`.

    `truth` (N, B, 5+) rows x, y, w, h, class relative to the network input of size `net_size` (w, h);
    `biases` the (2*total,) anchors in pixels. The delta is Darknet's `l.delta` (target - output sense) for the
    output; `cost` is `*l.cost`; `stats` holds the values of the line Darknet prints (see `report_line`)."""
    p = params
    batch, channels, h, w = output.shape
    n, entries, cells = p.n, 5 + p.classes, h * w
    dev = output.device
    out = output.detach().float().reshape(batch, n, entries, cells).clone()
    delta = torch.zeros_like(out)
    anchors = biases.detach().float().to(dev).reshape(-1, 2)
    mask = torch.tensor(p.mask, device=dev)
    grid = _Grid(out, w, h, int(net_size[0]), int(net_size[1]), anchors, p.new_coords)
    multipliers = class_multipliers(p)
    table = torch.as_tensor(class_map, dtype=torch.long, device=dev) if class_map is not None else None
    obj_norm, iou_norm = _f32(p.obj_normalizer), _f32(p.iou_normalizer)

    rows, valid = _truth_rows(truth.to(dev), p)
    t_box = Box(*rows[..., :4].unbind(-1))  # (N, T)
    has_truth = valid.any(1)
    # process_batch zeroes a NaN/Inf objectness when it compares the slot with a truth
    obj = out[:, :, 4]
    out[:, :, 4] = torch.where(~torch.isfinite(obj) & has_truth[:, None, None], 0.0, obj)
    obj = out[:, :, 4]

    # Pass 1, every slot: no-object delta, unless it overlaps a truth past ignore_thresh (or truth_thresh).
    pos = torch.arange(cells, device=dev)
    col, row = (pos % w).float(), torch.div(pos, w, rounding_mode="floor").float()
    raw = out[:, :, :4].transpose(2, 3)  # (N, A, cells, 4)
    pred = grid.box(raw, anchors[mask][None, :, None, :], col, row)
    ious = box_iou(Box(*(v[..., None] for v in pred)), Box(*(v[:, None, None, :] for v in t_box)))
    ious = torch.where(valid[:, None, None, :] & (ious > 0), ious, 0.0)  # C's `iou > best` from 0
    best_iou, best_t = ious.max(-1) if ious.shape[-1] else (torch.zeros_like(obj), torch.zeros_like(obj).long())
    class_match = (out[:, :, 5:] > CLASS_MATCH_THRESH).any(2)
    best_match = torch.where(class_match, best_iou, 0.0)
    obj_delta = obj_norm * (0 - obj)
    ignored = best_match > _f32(p.ignore_thresh)
    if p.objectness_smooth:
        smooth = obj_norm * (best_match - obj)
        obj_delta = torch.where(ignored & (smooth > obj_delta), smooth, obj_delta)
    else:
        obj_delta = torch.where(ignored, 0.0, obj_delta)
    delta[:, :, 4] = obj_delta
    avg_anyobj = obj.sum(dtype=torch.float64)
    total_bbox = rewritten = 0

    certain = best_iou > _f32(p.truth_thresh)
    if certain.any():  # truth_thresh < 1: the slot is trained as that truth's, like an assigned one
        b, a, c = torch.nonzero(certain, as_tuple=True)
        t = best_t[b, a, c]
        label = rows[b, t, 4].long()
        label = table[label] if table is not None else label
        mult = multipliers.to(dev)[label] if multipliers is not None else torch.ones(len(b), device=dev)
        square = best_iou[b, a, c] * best_iou[b, a, c]
        o = out[b, a, 4, c]
        delta[b, a, 4, c] = obj_norm * ((square if p.objectness_smooth else 1) - o)
        probs = out[b, a, 5:, c]
        classes = _class_delta(p, probs, delta[b, a, 5:, c], label, multipliers)
        if p.objectness_smooth:
            k = torch.arange(len(b), device=dev)
            classes[k, label] = mult * (square - probs[k, label])
        delta[b, a, 5:, c] = classes
        tb = Box(*(v[b, t] for v in t_box))
        d, _, _ = _box_delta(grid, p, out[b, a, :4, c], anchors[mask[a]], col[c], row[c], tb, iou_norm * mult)
        delta[b, a, :4, c] += d
        total_bbox += len(b)

    # Pass 2, every truth in order: its best anchor (and with iou_thresh < 1 the others close enough) at its cell.
    bi, ti = torch.nonzero(valid, as_tuple=True)
    tb = Box(*(v[bi, ti] for v in t_box))
    zero = torch.zeros_like(tb.x)
    shapes = grid.anchor_shapes()
    truth_shift = Box(zero, zero, tb.w, tb.h)
    pair = (Box(*(v[None, :] for v in shapes)), Box(*(v[:, None] for v in truth_shift)))  # (K, total)
    anchor_iou = box_iou(*pair)
    best_n = torch.where(anchor_iou > 0, anchor_iou, 0.0).argmax(1) if len(bi) else zero.long()
    in_mask = torch.full((len(anchors),), -1, dtype=torch.long, device=dev)
    in_mask[mask] = torch.arange(n, device=dev)
    total = len(anchors)
    take = torch.zeros(len(bi), total, dtype=torch.bool, device=dev)
    take[torch.arange(len(bi), device=dev), best_n] = True
    if _f32(p.iou_thresh) < 1:
        close = box_iou_kind(*pair, p.iou_thresh_kind) > _f32(p.iou_thresh)
        take |= close
    take &= in_mask[None, :] >= 0
    k, anchor_n = torch.nonzero(take, as_tuple=True)  # truth-major, then anchor order: Darknet's order,
    first = anchor_n == best_n[k]  # except that the best anchor comes first for its truth
    order = torch.argsort(k * (total + 1) + torch.where(first, 0, anchor_n + 1))
    k, anchor_n = k[order], anchor_n[order]

    b, a = bi[k], in_mask[anchor_n]
    box = Box(*(v[k] for v in tb))
    # (int)(truth.x * l.w); a centre at exactly 1 (Darknet writes past the grid) goes to the last cell
    ci = (box.x * w).long().clamp(0, w - 1)
    cj = (box.y * h).long().clamp(0, h - 1)
    cell = cj * w + ci
    label = rows[b, ti[k], 4].long()
    label = table[label] if table is not None else label
    mult = multipliers.to(dev)[label] if multipliers is not None else torch.ones(len(k), device=dev)
    slot_raw = out[b, a, :4, cell]
    d_box, iou, giou = _box_delta(grid, p, slot_raw, anchors[anchor_n], ci.float(), cj.float(), box, iou_norm * mult)
    o = out[b, a, 4, cell]
    obj_target = mult * obj_norm * (1 - o)
    avg_cat = torch.zeros((), dtype=torch.float64, device=dev)

    rank = write_rounds((b * n + a) * cells + cell)
    for r in range(int(rank.max()) + 1 if len(k) else 0):
        s = torch.nonzero(rank == r)[:, 0]
        sb, sa, sc = b[s], a[s], cell[s]
        current = delta[sb, sa, :4, sc]
        rewritten += int((current != 0).any(1).sum())
        delta[sb, sa, :4, sc] = current + d_box[s]
        old = delta[sb, sa, 4, sc]
        delta[sb, sa, 4, sc] = torch.where(old == 0, obj_target[s], old) if p.objectness_smooth else obj_target[s]
        probs = out[sb, sa, 5:, sc]
        delta[sb, sa, 5:, sc] = _class_delta(p, probs, delta[sb, sa, 5:, sc], label[s], multipliers)
        avg_cat += probs[torch.arange(len(s), device=dev), label[s]].sum(dtype=torch.float64)
    total_bbox += len(k)

    if _f32(p.iou_thresh) < 1:  # averages_yolo_deltas at every slot with an objectness delta
        pulled = (delta[:, :, 5:] > 0).sum(2, keepdim=True)
        divide = (delta[:, :, 4:5] != 0) & (pulled > 0)
        delta[:, :, :4] = torch.where(divide, delta[:, :, :4] / pulled.clamp_min(1).float(), delta[:, :, :4])

    count = len(k)
    stats = {
        "tot_iou": float(iou.sum(dtype=torch.float64)), "tot_iou_loss": float((1 - iou).sum(dtype=torch.float64)),
        "tot_giou_loss": float((1 - giou).sum(dtype=torch.float64)), "count": count,
        "avg_cat": float(avg_cat), "avg_obj": float(o.sum(dtype=torch.float64)), "avg_anyobj": float(avg_anyobj),
        "recall": int((iou > 0.5).sum()), "recall75": int((iou > 0.75).sum()), "slots": batch * n * cells,
        "total_bbox": total_bbox, "rewritten_bbox": rewritten, "batch": batch,
    }
    cost = _cost(p, delta, stats)
    return HeadDelta(delta.reshape(output.shape), cost, stats)


def _sum_squares(delta: Tensor) -> float:
    """pow(mag_array(delta), 2): under darknet_reduction_order() in Darknet's float32 order (its -Ofast loop:
    four lane sums), else in double."""
    if not darknet_order():
        return float(delta.double().square().sum())
    squares = delta.detach().float().cpu().numpy().reshape(1, -1) ** 2
    magnitude = np.float32(np.sqrt(np.float64(batch_lane_sum(squares))))  # mag_array returns a float
    return float(np.float32(np.float64(magnitude) ** 2))


def _cost(p: YoloParams, delta: Tensor, stats: dict) -> float:
    """*l.cost, and the printed losses into `stats`: with show_details (default) the squared delta without
    the box entries (times obj_normalizer: Darknet's "class_loss"), and for the IoU losses the cost is that
    plus iou_normalizer times the mean (1 - IoU) (GIoU: 1 - GIoU) instead of the box deltas' squares."""
    loss = _sum_squares(delta)
    count = max(stats["count"], 1)
    batch = stats["batch"]
    stats["loss"] = loss / batch
    if not p.show_details:
        return loss
    no_box = delta.clone()
    no_box[:, :, :4] = 0  # the same array with the box entries zeroed (Darknet's order of the others kept)
    classification = _f32(p.obj_normalizer) * _sum_squares(no_box)
    stats["class_loss"] = classification / batch
    stats["iou_loss"] = (loss - classification) / batch
    if p.iou_loss == "mse":
        return loss
    mean_loss = (stats["tot_giou_loss"] if p.iou_loss == "giou" else stats["tot_iou_loss"]) / count
    return _f32(p.iou_normalizer) * mean_loss + classification


def report_line(index: int, params: YoloParams, stats: dict) -> str:
    """The line forward_yolo_layer prints for layer `index` (stderr), from yolo_delta's stats."""
    p = params
    name = "mse" if p.iou_loss == "mse" else "giou" if p.iou_loss == "giou" else "iou"
    count = max(stats["count"], 1)  # Darknet prints 1 for none
    head = (f"v3 ({name} loss, Normalizer: (iou: {_f32(p.iou_normalizer):.2f}, obj: {_f32(p.obj_normalizer):.2f}, "
            f"cls: {_f32(p.cls_normalizer):.2f}) Region {index} Avg (IOU: {stats['tot_iou'] / count:f}), "
            f"count: {count}, ")
    if not p.show_details:
        return head + f"total_loss = {stats['loss']:f} "
    return head + (f"class_loss = {stats['class_loss']:f}, iou_loss = {stats['iou_loss']:f}, "
                   f"total_loss = {stats['loss']:f} ")


def bbox_line(total_bbox: int, rewritten_bbox: int) -> str:
    """train_network_datum's line after each forward (Darknet's counters run over the whole training)."""
    return f" total_bbox = {total_bbox}, rewritten_bbox = {100 * rewritten_bbox / total_bbox:f} % "
