"""AlexeyAB's per-layer training options: learning_rate= scales the layer's rate, dont_update= / burnin_update= /
train_only_bn= skip its update (its update buffers keep accumulating), stopbackward= stops the backward there."""

from __future__ import annotations

import torch

from pydarknet.cfg import parse_cfg_text
from pydarknet.network import Darknet
from pydarknet.train.trainer import Trainer

CFG = """[net]
batch=2
subdivisions=1
width=32
height=32
channels=3
learning_rate=0.01
momentum=0.9
decay=0.0005
burn_in=0
max_batches=10
policy=constant

[convolutional]
filters=4
size=3
stride=2
pad=1
activation=leaky
{first}

[convolutional]
filters=4
size=3
stride=1
pad=1
activation=mish
{second}

[convolutional]
filters=21
size=1
stride=1
activation=linear

[yolo]
mask=0,1,2
anchors=4,6, 8,10, 12,14
classes=2
num=3
"""


def _net(first: str = "", second: str = "") -> Darknet:
    torch.manual_seed(0)
    return Darknet(parse_cfg_text(CFG.format(first=first, second=second), "t.cfg"), "t.cfg")


def _batch() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    truth = torch.zeros(2, 4, 5)
    truth[:, 0] = torch.tensor([0.4, 0.6, 0.3, 0.4, 1.0])
    truth[:, 1] = torch.tensor([0.7, 0.3, 0.2, 0.2, 0.0])
    return torch.rand(2, 3, 32, 32, generator=g), truth


def _moves(net: Darknet, steps: int = 1) -> list[torch.Tensor]:
    """How much each conv's weights moved over `steps` iterations."""
    before = [layer.conv.weight.detach().clone() for layer in net.layers[:3]]
    trainer = Trainer(net)
    images, truth = _batch()
    for _ in range(steps):
        trainer.step(images, truth)
    return [layer.conv.weight.detach() - w for layer, w in zip(net.layers[:3], before)]


def test_learning_rate_scales_the_layer_step():
    plain, scaled = _moves(_net()), _moves(_net(second="learning_rate=0.25"))
    torch.testing.assert_close(scaled[1], 0.25 * plain[1])
    torch.testing.assert_close(scaled[0], plain[0])


def test_dont_update_holds_the_layer_then_applies_what_it_accumulated():
    plain, held = _moves(_net(), 2), _moves(_net(first="dont_update=1"), 1)
    assert not held[0].any() and held[1].any()
    net = _net(first="dont_update=1")
    moved = _moves(net, 2)[0]  # iteration 2 applies both iterations' gradients at once
    assert moved.abs().sum() > plain[0].abs().sum() * 0.5 and not torch.equal(moved, plain[0])


def test_burnin_update_and_train_only_bn_skip_updates():
    net = _net(second="burnin_update=2")
    net.config.burn_in = 3
    assert not _moves(net)[1].any()
    assert not _moves(_net(first="train_only_bn=1"))[0].any()


def test_stopbackward_leaves_the_layers_up_to_it_without_gradient():
    plain = _moves(_net())
    stopped = _moves(_net(second="stopbackward=1"))
    decay_only = -0.01 / 2 * 0.0005 * 2  # lr/batch * (-decay*batch*w): weight decay is still applied
    ulp = dict(rtol=0, atol=2e-7)  # a move of ~1e-6 read back from weights of ~0.5
    for moved, layer in zip(stopped[:2], _net().layers[:2]):
        torch.testing.assert_close(moved, decay_only * layer.conv.weight.detach(), **ulp)
    assert plain[1].abs().max() > 1e-4
    torch.testing.assert_close(stopped[2], plain[2])
    later = _net(second="stopbackward=5")  # while fewer than 5 iterations are done
    torch.testing.assert_close(_moves(later)[0], decay_only * _net().layers[0].conv.weight.detach(), **ulp)
