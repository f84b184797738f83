"""One Trainer.step of each [yolo]-family fixture equals AlexeyAB's Darknet's train_network: its loss, its [yolo]
lines and its updated.weights (README: within 2e-2 of what the step moved).

The fixtures come from a CPU build, whose backward differs from the GPU/cuDNN one pydarknet trains with
(tests/alexeyab_cpu_backward.py): the comparison runs under that emulation, and a second test shows that the
difference it makes is exactly the CPU build's (the layers it touches move differently without it)."""

from __future__ import annotations

import json
import re
from contextlib import nullcontext

import numpy as np
import pytest
import torch
from alexeyab_cpu_backward import cpu_backward, lost_reads

from conftest import YOLO_FIXTURES, YOLO_NETS
from pydarknet.heads.yolo_loss import report_line
from pydarknet.layers.batchnorm import darknet_reduction_order
from pydarknet.network import Darknet, build_network
from pydarknet.train.trainer import Trainer

MOVE_TOL = 2e-2  # README: updated weights within 2e-2 of what the step moved
NUMBER = re.compile(r"-?\d+\.\d+|\d+")


def _fixture_net(name: str, weights: str = "net.weights") -> Darknet:
    net = build_network(YOLO_FIXTURES / name / "net.cfg")
    net.load_weights(YOLO_FIXTURES / name / ("train/" + weights if weights != "net.weights" else weights))
    return net


def _batch(name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixture's two images and its truth as the trainer takes it: (2, 200, 5), zero rows after the boxes."""
    d = YOLO_FIXTURES / name / "train"
    boxes = np.load(d / "train_boxes.npy")[..., :5]  # x, y, w, h, class (the track id is not used)
    truth = torch.zeros(2, 200, 5)
    truth[:, : boxes.shape[1]] = torch.from_numpy(boxes)
    return torch.from_numpy(np.load(d / "train_input.npy")), truth


def _step(name: str, cpu: bool, order: bool = False) -> tuple[Darknet, dict, Trainer, float]:
    net = _fixture_net(name)
    net.seen = 0
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    trainer = Trainer(net)
    images, truth = _batch(name)
    with cpu_backward(net) if cpu else nullcontext(), darknet_reduction_order() if order else nullcontext():
        loss = trainer.step(images, truth)
    return net, before, trainer, loss


def _moved_off(net: Darknet, before: dict, ref: Darknet) -> dict[str, float]:
    """Per parameter: max |ours - Darknet's| / max |Darknet's move|."""
    theirs = {k: p.detach() for k, p in ref.named_parameters()}
    return {k: float((p - theirs[k]).abs().max() / (theirs[k] - before[k]).abs().max())
            for k, p in ((k, p.detach()) for k, p in net.named_parameters()) if not k.endswith("bn.bias")}


@pytest.mark.parametrize("name", YOLO_NETS)
def test_one_step_matches_darknet(name):
    net, before, trainer, loss = _step(name, cpu=True)
    ref = json.loads((YOLO_FIXTURES / name / "train" / "train.json").read_text())
    assert net.seen == ref["seen_after"] == 2
    assert trainer.last_lr == pytest.approx(ref["learning_rate_used"], rel=1e-6)
    # train_network: the mean of the [yolo] costs over the layers, divided by the batch. Darknet sums the
    # squared deltas in float32, pydarknet in double: 7e-7 measured.
    assert loss == pytest.approx(ref["loss"], rel=1e-5)

    updated = _fixture_net(name, "updated.weights")
    assert updated.seen == 2
    off = _moved_off(net, before, updated)
    assert off and max(off.values()) < MOVE_TOL, {k: v for k, v in off.items() if v >= MOVE_TOL}
    for k, p in updated.named_parameters():  # the CPU build does not train BatchNorm biases
        if k.endswith("bn.bias"):
            assert torch.equal(p, before[k]), k
    # BatchNorm's rolling statistics moved by the forward as in Darknet's step
    for ours, theirs in zip(net.buffers(), updated.buffers()):
        if ours.dtype.is_floating_point:
            np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", YOLO_NETS)
def test_yolo_lines_as_darknet_prints_them(name):
    net, _, trainer, _ = _step(name, cpu=True, order=True)
    printed = [line.rstrip() for line in (YOLO_FIXTURES / name / "train" / "darknet_stdout.txt").read_text()
               .splitlines() if line.startswith("v3 (")]
    ours = [report_line(i, net.layers[i].params, stats).rstrip() for i, stats in trainer.last_stats.items()]
    assert len(ours) == len(printed) >= 1
    for mine, theirs in zip(ours, printed):
        assert NUMBER.sub("#", mine) == NUMBER.sub("#", theirs)
        # The squared deltas are summed in Darknet's float32 order; the deltas themselves differ in their last
        # bits: dx_box_iou's differences of nearly equal floats, which gcc -Ofast may also reassociate
        # (mini_v4tiny's large CIoU box deltas: 1e-5 relative on its iou_loss).
        np.testing.assert_allclose([float(v) for v in NUMBER.findall(mine)],
                                   [float(v) for v in NUMBER.findall(theirs)], rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("name", ["mini_v3", "mini_attn"])
def test_gpu_semantics_differ_where_the_cpu_build_loses_gradients(name):
    """Without the emulation (pydarknet's GPU/cuDNN semantics) the loss is the same and the layers after the
    lost reads still match; the layers that feed them do not, and BatchNorm biases move."""
    net, before, _, _ = _step(name, cpu=False)
    assert lost_reads(net)
    off = _moved_off(net, before, _fixture_net(name, "updated.weights"))
    last = max(i for i, k in enumerate(net.kinds) if k == "convolutional")
    assert off[f"layers.{last}.conv.weight"] < MOVE_TOL
    assert max(off.values()) > 0.2
    assert any(not torch.equal(p, before[k]) for k, p in net.named_parameters() if k.endswith("bn.bias"))


def test_loss_scale_multiplies_the_delta_and_divides_the_step():
    """loss_scale (mixed-precision headroom): the [yolo] delta is multiplied by it and the update divides it
    out, so two steps move the weights as without it (the rounding aside)."""
    moved = []
    for scale in (1.0, 8.0):
        net = _fixture_net("mini_v4tiny")
        net.config.loss_scale = scale
        before = {k: v.detach().clone() for k, v in net.named_parameters()}
        trainer = Trainer(net)
        images, truth = _batch("mini_v4tiny")
        for _ in range(2):
            trainer.step(images, truth)
        moved.append({k: p.detach() - before[k] for k, p in net.named_parameters()})
    for k, a in moved[0].items():
        torch.testing.assert_close(moved[1][k], a, rtol=1e-4, atol=1e-4 * float(a.abs().max()), msg=k)
