"""AlexeyAB's IoU kinds and dx_box_iou: where Darknet's derivative is the true one, it equals autograd's (with its
"x, y, w, h" packing: dw, dh are twice d/dw, d/dh); its own terms where it departs from it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pydarknet.heads.box_loss import Box, box_ciou, box_diou, box_giou, box_iou, box_iou_kind, dx_box_iou


def _boxes(seed: int, k: int, inside: bool = False) -> tuple[Box, Box]:
    """Random overlapping (pred, truth) pairs; with `inside`, each pred lies strictly inside its truth."""
    g = torch.Generator().manual_seed(seed)
    truth = Box(*(torch.rand(k, generator=g) * 0.4 + 0.3 for _ in range(2)),
                *(torch.rand(k, generator=g) * 0.3 + 0.2 for _ in range(2)))
    if inside:
        w, h = truth.w * (torch.rand(k, generator=g) * 0.5 + 0.2), truth.h * (torch.rand(k, generator=g) * 0.5 + 0.2)
        x = truth.x + (truth.w - w) / 2 * (torch.rand(k, generator=g) * 1.6 - 0.8)
        y = truth.y + (truth.h - h) / 2 * (torch.rand(k, generator=g) * 1.6 - 0.8)
        return Box(x, y, w, h), truth
    pred = Box(truth.x + (torch.rand(k, generator=g) - 0.5) * 0.2, truth.y + (torch.rand(k, generator=g) - 0.5) * 0.2,
               truth.w * (torch.rand(k, generator=g) + 0.5), truth.h * (torch.rand(k, generator=g) + 0.5))
    return pred, truth


def _autograd(fn, pred: Box, truth: Box) -> list[torch.Tensor]:  # noqa: ANN001
    leaves = [v.double().clone().requires_grad_() for v in pred]
    fn(Box(*leaves), Box(*(v.double() for v in truth))).sum().backward()
    return [v.grad.float() for v in leaves]


def _iou_minus_distance(a: Box, b: Box) -> torch.Tensor:
    """DIoU as its derivative is written (IoU - d^2/c^2); box_diou's value raises d^2/c^2 to 0.6."""
    c = (torch.fmax(a.x + a.w / 2, b.x + b.w / 2) - torch.fmin(a.x - a.w / 2, b.x - b.w / 2)) ** 2 + \
        (torch.fmax(a.y + a.h / 2, b.y + b.h / 2) - torch.fmin(a.y - a.h / 2, b.y - b.h / 2)) ** 2
    return box_iou(a, b) - ((a.x - b.x) ** 2 + (a.y - b.y) ** 2) / c


@pytest.mark.parametrize(("kind", "fn", "inside"), [("iou", box_iou, False), ("giou", box_giou, False),
                                                     ("diou", _iou_minus_distance, True)])
def test_derivative_is_autograds_where_darknet_derives_truly(kind, fn, inside):
    pred, truth = _boxes(1, 200, inside)
    dx, dy, dw, dh = dx_box_iou(pred, truth, kind)
    gx, gy, gw, gh = _autograd(fn, pred, truth)
    for ours, true in ((dx, gx), (dy, gy), (dw, 2 * gw), (dh, 2 * gh)):
        np.testing.assert_allclose(ours.numpy(), true.numpy(), rtol=2e-3, atol=2e-4)


def test_ciou_adds_its_aspect_term_without_the_true_denominator():
    """CIoU = DIoU's derivative + alpha * 8/pi^2 (atan(gt w/h) - atan(w/h)) * h (for dw; -... * w for dh): the
    paper's simplification, without autograd's 1 / (w^2 + h^2)."""
    pred, truth = _boxes(2, 50)
    diou, ciou = dx_box_iou(pred, truth, "diou"), dx_box_iou(pred, truth, "ciou")
    iou = box_iou(pred, truth).double()
    diff = torch.atan(truth.w.double() / truth.h.double()) - torch.atan(pred.w.double() / pred.h.double())
    v = 4 / math.pi ** 2 * diff ** 2
    alpha = v / (1 - iou + v + 1e-6)
    np.testing.assert_allclose(ciou[0].numpy(), diou[0].numpy())
    np.testing.assert_allclose(ciou[1].numpy(), diou[1].numpy())
    np.testing.assert_allclose((ciou[2] - diou[2]).numpy(), (alpha * 8 / math.pi ** 2 * diff * pred.h).numpy(),
                               rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose((ciou[3] - diou[3]).numpy(), (-alpha * 8 / math.pi ** 2 * diff * pred.w).numpy(),
                               rtol=1e-4, atol=1e-6)


def test_iou_kinds_values():
    a = Box(*(torch.tensor([v]) for v in (0.5, 0.5, 0.2, 0.4)))
    b = Box(*(torch.tensor([v]) for v in (0.6, 0.5, 0.2, 0.2)))
    iou = 0.02 / (0.08 + 0.04 - 0.02)  # intersection .1 x .2
    assert box_iou(a, b).item() == pytest.approx(iou, rel=1e-6)
    assert box_giou(a, b).item() == pytest.approx(iou - (0.12 - 0.1) / 0.12, rel=1e-5)  # enclosing .3 x .4
    assert box_diou(a, b).item() == pytest.approx(iou - (0.01 / 0.25) ** 0.6, rel=1e-5)
    v = 4 / math.pi ** 2 * (math.atan(1) - math.atan(0.5)) ** 2
    assert box_ciou(a, b).item() == pytest.approx(iou - (0.01 / 0.25 + v / (1 - iou + v + 1e-6) * v), rel=1e-5)
    assert box_iou_kind(a, b, "mse").item() == box_iou(a, b).item()
    # AlexeyAB returns 0 for an empty intersection or union (pjreddie's would divide)
    zero = Box(*(torch.zeros(1) for _ in range(4)))
    assert box_iou(zero, zero).item() == 0 and box_giou(zero, zero).item() == 0
