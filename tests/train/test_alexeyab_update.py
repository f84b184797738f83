"""AlexeyAB's update rule (update_*_layer_gpu) and EMA, against values worked out by hand from its formulas."""

from __future__ import annotations

import types

import pytest
import torch
from torch import nn

from pydarknet.netconfig import NetConfig
from pydarknet.train.alexeyab_update import AlexeyABUpdate

LR, DECAY, MOMENTUM, BATCH = 0.001, 0.0005, 0.9, 64


class Weighted(nn.Module):
    """A [shortcut] with weights, as AlexeyAB's weighted shortcut has."""

    def __init__(self) -> None:
        super().__init__()
        self.weights = nn.Parameter(torch.ones(2))


def toy_net(loss_scale: float = 4.0, **kw) -> types.SimpleNamespace:
    conv = nn.Conv2d(1, 1, 2, bias=True)
    fc = nn.Linear(2, 1)
    with torch.no_grad():
        conv.weight.fill_(0.5)
        conv.bias.fill_(0.1)
        fc.weight.fill_(0.5)
        fc.bias.fill_(0.1)
    config = NetConfig(width=8, height=8, channels=1, batch=BATCH, subdivisions=1, dialect="alexeyab",
                       momentum=MOMENTUM, decay=DECAY, loss_scale=loss_scale, **kw)
    return types.SimpleNamespace(config=config, kinds=["convolutional", "shortcut", "connected"],
                                 layers=[conv, Weighted(), fc])


def setup(net: types.SimpleNamespace) -> tuple[AlexeyABUpdate, list[torch.Tensor], list[torch.Tensor]]:
    params = [p for layer in net.layers for p in layer.parameters()]
    return AlexeyABUpdate(net, params), params, [torch.zeros_like(p) for p in params]


def test_each_layer_kind_updates_as_alexeyab_does():
    net = toy_net(loss_scale=4.0)
    update, (cw, cb, sw, fw, fb), updates = setup(net)
    cw.grad, cb.grad = torch.full_like(cw, -2.0), torch.full_like(cb, -1.0)
    sw.grad = torch.tensor([-3.0, 0.5])
    fw.grad, fb.grad = torch.full_like(fw, -2.0), torch.full_like(fb, -1.0)
    update(updates, LR, 1)
    # conv weights: u = 2 - decay*batch*L*w = 1.936; w += lr/L/batch*u; u *= momentum
    assert cw.detach() == pytest.approx(torch.full_like(cw, 0.5 + LR / 4 / 64 * 1.936))
    assert updates[0] == pytest.approx(torch.full_like(cw, 1.936 * 0.9))
    assert cb.item() == pytest.approx(0.1 + LR / 4 / 64 * 1.0) and updates[1].item() == pytest.approx(0.9)
    # shortcut weights: no decay, updates clipped to [-1, 1]
    assert sw.detach().tolist() == pytest.approx([1 + LR / 4 / 64 * 1.0, 1 - LR / 4 / 64 * 0.5])
    assert updates[2].tolist() == pytest.approx([0.9, -0.45])
    # connected: u /= L, then pjreddie's rule: u = 0.5 - decay*batch*w = 0.484
    assert fw.detach() == pytest.approx(torch.full_like(fw, 0.5 + LR / 64 * 0.484))
    assert fb.item() == pytest.approx(0.1 + LR / 64 * 0.25)
    # the next update carries the momentum (no new gradient)
    update(updates, LR, 2)
    u = 1.936 * 0.9 - DECAY * 64 * 4 * (0.5 + LR / 4 / 64 * 1.936)
    assert cw.detach() == pytest.approx(torch.full_like(cw, 0.5 + LR / 4 / 64 * 1.936 + LR / 4 / 64 * u))


def test_loss_scale_divides_out_of_scaled_gradients():
    results = []
    for scale in (1.0, 8.0):
        net = toy_net(loss_scale=scale)
        update, params, updates = setup(net)
        for step in range(3):
            for p in params:
                p.grad = torch.full_like(p, scale * 0.3 * (step + 1))  # the delta carries loss_scale
            update(updates, LR, step + 1)
        results.append([p.detach().clone() for p in params])
    # conv weight and bias: the same steps. (The shortcut clips the scaled updates, and the connected layer
    # divides its whole buffer, momentum included, by loss_scale at every update: neither is scale-free.)
    for a, b in zip(results[0][:2], results[1][:2]):
        assert torch.allclose(a, b, rtol=1e-6, atol=0)
    assert not torch.allclose(results[0][3], results[1][3], rtol=1e-6, atol=0)


def test_nan_and_inf_are_repaired_as_in_darknet():
    net = toy_net(loss_scale=1.0)
    update, (cw, *_), updates = setup(net)
    with torch.no_grad():
        cw.view(-1)[3] = float("nan")
    cw.grad = torch.tensor([[[[0.0, float("inf")], [0.0, 0.0]]]])
    update(updates, 0.0, 1)
    # fix_nan_and_inf: weight 3 -> 1/(3+1); reset_nan_and_inf: the Inf update -> 0
    assert cw.view(-1)[3].item() == pytest.approx(0.25)
    assert torch.isfinite(updates[0]).all()


def test_ema_starts_at_half_and_is_applied_1000_before_the_end():
    net = toy_net(loss_scale=1.0, ema_alpha=0.5, max_batches=2200)  # start 1100, apply at 1200
    update, (cw, *_), updates = setup(net)

    def at(iteration: int, weight: float) -> None:
        with torch.no_grad():
            cw.fill_(weight)
        update(updates, 0.0, iteration)  # rate 0: only the EMA moves anything

    at(1099, 7.0)
    assert update.ema is None
    at(1100, 2.0)  # initialised to the weights, then ema = .5*2 + .5*2
    assert update.ema[0].flatten().tolist() == [2.0] * 4
    at(1101, 4.0)  # .5*2 + .5*4
    assert update.ema[0].flatten().tolist() == [3.0] * 4
    with update.ema_swapped():
        assert cw.flatten().tolist() == [3.0] * 4
    assert cw.flatten().tolist() == [4.0] * 4
    at(1200, 9.0)  # ema_apply: the weights become the average
    assert cw.flatten().tolist() == [3.0] * 4
    at(1201, 5.0)  # after the apply point nothing changes
    assert update.ema[0].flatten().tolist() == [3.0] * 4 and cw.flatten().tolist() == [5.0] * 4
