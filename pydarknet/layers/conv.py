"""[convolutional]: conv, optional Darknet batchnorm, activation."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.activations import Activation, activation_option
from pydarknet.layers.batchnorm import DarknetBatchNorm
from pydarknet.layers.registry import Built, Context, Shape, register


class ConvLayer(nn.Module):
    def __init__(self, c: int, n: int, size: int, stride: int, padding: int, groups: int,
                 batch_normalize: bool, activation: str) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, n, size, stride, padding, groups=groups, bias=not batch_normalize)
        # Darknet's initialisation: weights N(0, 1) * sqrt(2 / fan_in), biases 0.
        with torch.no_grad():
            self.conv.weight.normal_(0.0, math.sqrt(2.0 / (size * size * c // groups)))
            if self.conv.bias is not None:
                self.conv.bias.zero_()
        self.bn = DarknetBatchNorm(n) if batch_normalize else None
        self.act = Activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return self.act(y)

    def darknet_params(self) -> list[Tensor]:
        """Tensors in the order Darknet's .weights stores them."""
        if self.bn is not None:
            return [self.bn.bias, self.bn.weight, self.bn.running_mean, self.bn.running_var,
                    self.conv.weight]
        return [self.conv.bias, self.conv.weight]

    @torch.no_grad()
    def fold_batchnorm(self) -> None:
        """Fold BN into the conv (inference only): the same Darknet formula, one op fewer."""
        if self.bn is None:
            return
        mult, offset = self.bn.folded()
        folded = nn.Conv2d(self.conv.in_channels, self.conv.out_channels, self.conv.kernel_size,
                           self.conv.stride, self.conv.padding, groups=self.conv.groups, bias=True)
        folded.weight.copy_(self.conv.weight * mult.view(-1, 1, 1, 1))
        folded.bias.copy_(offset)
        self.conv, self.bn = folded.to(self.conv.weight.device), None


@register("convolutional", "conv")
def build_conv(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    n = sec.positive_int("filters", 1)
    size = sec.positive_int("size", 1)
    stride = sec.positive_int("stride", 1)
    pad = sec.get_int("pad", 0)
    padding = sec.get_int("padding", 0)
    groups = sec.positive_int("groups", 1)
    if pad:
        padding = size // 2  # Darknet: pad=1 overrides padding= with size/2
    if padding < 0:
        raise sec.error(f"padding={padding} must not be negative", "padding")
    if c % groups or n % groups:
        raise sec.error(f"groups={groups} must divide the input channels {c} and filters {n}", "groups")
    activation = activation_option(sec)
    bn = bool(sec.get_int("batch_normalize", 0))
    for key in ("binary", "xnor"):
        if sec.get_int(key, 0):
            raise sec.error(f"{key}=1 convolutions are not supported by pydarknet", key)
    if sec.get_int("flipped", 0):
        raise sec.error("flipped=1 convolutions are not supported by pydarknet", "flipped")
    out_h = (h + 2 * padding - size) // stride + 1
    out_w = (w + 2 * padding - size) // stride + 1
    out = Shape(n, out_h, out_w)
    flops = 2 * n * size * size * (c // groups) * out_h * out_w
    summary = (f"conv  {n:5d} {size:2d} x{size:2d} /{stride:2d}  {w:4d} x{h:4d} x{c:4d}   ->  "
               f"{out_w:4d} x{out_h:4d} x{n:4d}  {flops / 1e9:5.3f} BFLOPs")
    module = ConvLayer(c, n, size, stride, padding, groups, bn, activation)
    return Built(module, out, summary, flops)
