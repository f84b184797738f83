"""AlexeyAB's box.c for the [yolo] loss: IoU, GIoU, DIoU and CIoU of (x, y, w, h) boxes and `dx_box_iou`, the
gradient of an IoU kind with respect to the predicted box as Darknet derives it (not autograd's: Darknet's
derivative is its own, with its corner choices and an "x, y, w, h" packing; parity needs it as written).

Float32 throughout, with C's comparisons: `a > b ? a : b` never picks a NaN on the left, fmin/fmax drop a
NaN; the few double expressions of the C source (pow, atan, M_PI) are computed in double and rounded.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

IOU_KINDS = ("iou", "giou", "mse", "diou", "ciou")  # AlexeyAB's IOU_LOSS enum order


class Box(NamedTuple):
    x: Tensor
    y: Tensor
    w: Tensor
    h: Tensor


def _c_max(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(a > b, a, b)


def _c_min(a: Tensor, b: Tensor) -> Tensor:
    return torch.where(a < b, a, b)


def _overlap(x1: Tensor, w1: Tensor, x2: Tensor, w2: Tensor) -> Tensor:
    return _c_min(x1 + w1 / 2, x2 + w2 / 2) - _c_max(x1 - w1 / 2, x2 - w2 / 2)


def _intersection(a: Box, b: Box) -> Tensor:
    w, h = _overlap(a.x, a.w, b.x, b.w), _overlap(a.y, a.h, b.y, b.h)
    return torch.where((w < 0) | (h < 0), 0.0, w * h)


def _union(a: Box, b: Box, inter: Tensor) -> Tensor:
    return a.w * a.h + b.w * b.h - inter


def box_iou(a: Box, b: Box) -> Tensor:
    """AlexeyAB's box_iou: 0 when the intersection or the union is 0."""
    inter = _intersection(a, b)
    union = _union(a, b, inter)
    return torch.where((inter == 0) | (union == 0), 0.0, inter / union)


def _enclosing(a: Box, b: Box) -> tuple[Tensor, Tensor]:
    """Width and height of the smallest box around both (box_c, with fmin/fmax)."""
    top = torch.fmin(a.y - a.h / 2, b.y - b.h / 2)
    bot = torch.fmax(a.y + a.h / 2, b.y + b.h / 2)
    left = torch.fmin(a.x - a.w / 2, b.x - b.w / 2)
    right = torch.fmax(a.x + a.w / 2, b.x + b.w / 2)
    return right - left, bot - top


def box_giou(a: Box, b: Box) -> Tensor:
    w, h = _enclosing(a, b)
    c = w * h
    iou = box_iou(a, b)
    union = _union(a, b, _intersection(a, b))
    return torch.where(c == 0, iou, iou - (c - union) / c)


def _centre_distance(a: Box, b: Box) -> Tensor:
    return (a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y)


def box_diou(a: Box, b: Box) -> Tensor:
    w, h = _enclosing(a, b)
    c = w * w + h * h
    iou = box_iou(a, b)
    term = (_centre_distance(a, b) / c).double().pow(0.6).float()  # pow(d / c, 0.6): the double pow
    return torch.where(c == 0, iou, iou - term)


def _aspect_term(truth: Box, pred: Box) -> tuple[Tensor, Tensor]:
    """(atan(gt w/h) - atan(pred w/h) in double, CIoU's `ar_loss` = 4/pi^2 * that^2 rounded to float)."""
    diff = torch.atan((truth.w / truth.h).double()) - torch.atan((pred.w / pred.h).double())
    return diff, (4 / (math.pi * math.pi) * diff * diff).float()


def _ciou_alpha(iou: Tensor, ar_loss: Tensor) -> Tensor:
    return (ar_loss.double() / ((1 - iou + ar_loss).double() + 0.000001)).float()


def box_ciou(a: Box, b: Box) -> Tensor:
    w, h = _enclosing(a, b)
    c = w * w + h * h
    iou = box_iou(a, b)
    _, ar_loss = _aspect_term(b, a)
    term = _centre_distance(a, b) / c + _ciou_alpha(iou, ar_loss) * ar_loss
    return torch.where(c == 0, iou, iou - term)


def box_iou_kind(a: Box, b: Box, kind: str) -> Tensor:
    """box_iou_kind: `mse` (and any other) falls back to the plain IoU."""
    return {"giou": box_giou, "diou": box_diou, "ciou": box_ciou}.get(kind, box_iou)(a, b)


def dx_box_iou(pred: Box, truth: Box, kind: str) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """dx_box_iou: Darknet's (dx, dy, dw, dh) of the IoU kind (iou, giou, diou or ciou) at `pred`."""
    pt, pb = pred.y - pred.h / 2, pred.y + pred.h / 2
    pl, pr = pred.x - pred.w / 2, pred.x + pred.w / 2
    pred_t, pred_b, pred_l, pred_r = torch.fmin(pt, pb), torch.fmax(pt, pb), torch.fmin(pl, pr), torch.fmax(pl, pr)
    tt, tb = truth.y - truth.h / 2, truth.y + truth.h / 2
    tl, tr = truth.x - truth.w / 2, truth.x + truth.w / 2

    x_area = (pred_b - pred_t) * (pred_r - pred_l)
    truth_area = (tb - tt) * (tr - tl)
    ih = torch.fmin(pred_b, tb) - torch.fmax(pred_t, tt)
    iw = torch.fmin(pred_r, tr) - torch.fmax(pred_l, tl)
    inter = iw * ih
    union = x_area + truth_area - inter
    dist = _centre_distance(pred, truth)
    giou_cw = torch.fmax(pred_r, tr) - torch.fmin(pred_l, tl)
    giou_ch = torch.fmax(pred_b, tb) - torch.fmin(pred_t, tt)
    giou_c = giou_cw * giou_ch

    zero = torch.zeros_like(inter)
    dx_t, dx_b, dx_l, dx_r = -1 * (pred_r - pred_l), pred_r - pred_l, -1 * (pred_b - pred_t), pred_b - pred_t
    di_t = torch.where(pred_t > tt, -1 * iw, zero)
    di_b = torch.where(pred_b < tb, iw, zero)
    di_l = torch.where(pred_l > tl, -1 * ih, zero)
    di_r = torch.where(pred_r < tr, ih, zero)
    du = [dx_t - di_t, dx_b - di_b, dx_l - di_l, dx_r - di_r]
    dc = [torch.where(pred_t < tt, -1 * giou_cw, zero), torch.where(pred_b > tb, giou_cw, zero),
          torch.where(pred_l < tl, -1 * giou_ch, zero), torch.where(pred_r > tr, giou_ch, zero)]
    uu = union * union
    p = [torch.where(union > 0, ((union * di) - (inter * d)) / uu, zero)
         for di, d in zip((di_t, di_b, di_l, di_r), du)]
    p_dt, p_db, p_dl, p_dr = p
    # the corner that is really the top/left one (for a negative size): sequential as in C
    p_dt = torch.where(pt < pb, p_dt, p_db)
    p_db = torch.where(pt < pb, p_db, p_dt)
    p_dl = torch.where(pl < pr, p_dl, p_dr)
    p_dr = torch.where(pl < pr, p_dr, p_dl)
    p = [p_dt, p_db, p_dl, p_dr]
    no_overlap = (iw <= 0) | (ih <= 0)
    if kind == "giou":
        cc = giou_c * giou_c
        c_term = [((giou_c * d) - (union * c)) / cc for d, c in zip(du, dc)]
        p = [torch.where(giou_c > 0, v + t, v) for v, t in zip(p, c_term)]
        p = [torch.where(no_overlap, t, v) for v, t in zip(p, c_term)]
    p_dt, p_db, p_dl, p_dr = p

    cw = torch.fmax(pred.x + pred.w / 2, truth.x + truth.w / 2) - torch.fmin(pred.x - pred.w / 2, truth.x - truth.w / 2)
    ch = torch.fmax(pred.y + pred.h / 2, truth.y + truth.h / 2) - torch.fmin(pred.y - pred.h / 2, truth.y - truth.h / 2)
    c = cw * cw + ch * ch
    one = torch.ones_like(zero)
    dct_dy, dct_dh = torch.where(pred_t < tt, one, zero), torch.where(pred_t < tt, -0.5 * one, zero)
    dcb_dy, dcb_dh = torch.where(pred_b > tb, one, zero), torch.where(pred_b > tb, 0.5 * one, zero)
    dcl_dx, dcl_dw = torch.where(pred_l < tl, one, zero), torch.where(pred_l < tl, -0.5 * one, zero)
    dcr_dx, dcr_dw = torch.where(pred_r > tr, one, zero), torch.where(pred_r > tr, 0.5 * one, zero)
    dcw_dx, dcw_dw = dcr_dx - dcl_dx, dcr_dw - dcl_dw
    dch_dy, dch_dh = dcb_dy - dct_dy, dcb_dh - dct_dh

    p_dx, p_dy, p_dw, p_dh = p_dl + p_dr, p_dt + p_db, p_dr - p_dl, p_db - p_dt
    if kind in ("diou", "ciou"):
        # dCw/dy, dCh/dx etc. are 0: Darknet's terms 2*Cw*0 vanish exactly
        c2 = c * c
        d_dx = (2 * (truth.x - pred.x) * c - (2 * cw * dcw_dx) * dist) / c2
        d_dy = (2 * (truth.y - pred.y) * c - (2 * ch * dch_dy) * dist) / c2
        d_dw = (2 * cw * dcw_dw) * dist / c2
        d_dh = (2 * ch * dch_dh) * dist / c2
        if kind == "ciou":
            diff, ar_loss = _aspect_term(truth, pred)
            alpha = _ciou_alpha(inter / union, ar_loss)
            ar_dw = (8 / (math.pi * math.pi) * diff * pred.h.double()).float()
            ar_dh = (-8 / (math.pi * math.pi) * diff * pred.w.double()).float()
            d_dw, d_dh = d_dw + alpha * ar_dw, d_dh + alpha * ar_dh
        positive = c > 0
        p_dx, p_dy = torch.where(positive, p_dx + d_dx, p_dx), torch.where(positive, p_dy + d_dy, p_dy)
        p_dw, p_dh = torch.where(positive, p_dw + d_dw, p_dw), torch.where(positive, p_dh + d_dh, p_dh)
        p_dx, p_dy = torch.where(no_overlap, d_dx, p_dx), torch.where(no_overlap, d_dy, p_dy)
        p_dw, p_dh = torch.where(no_overlap, d_dw, p_dw), torch.where(no_overlap, d_dh, p_dh)
    return p_dx, p_dy, p_dw, p_dh
