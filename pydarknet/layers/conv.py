"""[convolutional]: conv, optional Darknet batchnorm, activation (inference variant: layers/fast_conv.py)."""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.activations import Activation, activation_option
from pydarknet.layers.batchnorm import (
    FOLD_SOURCE,
    DarknetBatchNorm,
    batch_lane_sum,
    darknet_order,
    fold_batchnorm_double,
)
from pydarknet.layers.fast_conv import FastConv
from pydarknet.layers.registry import Built, Context, Shape, register

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


class _DarknetOrderConv(torch.autograd.Function):
    """conv2d whose weight and bias gradients are summed in Darknet's float32 order: per image, gemm_nt's
    `sum += delta*im2col` over the output positions and sum_array's over the deltas (both vectorised, see
    batch_lane_sum), added image after image. Only for `darknet_reduction_order()` (parity checks)."""

    @staticmethod
    def forward(ctx, x, weight, bias, conv):  # noqa: ANN001
        ctx.save_for_backward(x, weight)
        ctx.conv, ctx.has_bias = conv, bias is not None
        return F.conv2d(x, weight, bias, conv.stride, conv.padding, conv.dilation, conv.groups)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        x, weight = ctx.saved_tensors
        conv = ctx.conv
        b, n, groups = grad.shape[0], grad.shape[1], conv.groups
        grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad, conv.stride, conv.padding, conv.dilation,
                                            groups)
        # im2col rows are (channel, ky, kx), as in Darknet; per group: (batch, groups, 1, c*size*size, k).
        cols = F.unfold(x.detach().float(), conv.kernel_size, conv.dilation, conv.padding, conv.stride)
        cols = cols.reshape(b, groups, 1, -1, cols.shape[-1]).cpu().numpy()
        delta = grad.detach().float().reshape(b, groups, n // groups, 1, -1).cpu().numpy()
        grad_w = torch.from_numpy(batch_lane_sum(delta * cols)).reshape(weight.shape).to(weight.device)
        grad_b = None
        if ctx.has_bias:
            grad_b = torch.from_numpy(batch_lane_sum(delta.reshape(b, n, -1))).to(weight.device)
        return grad_x, grad_w, grad_b, None


class ConvLayer(nn.Module):
    def __init__(self, c: int, n: int, size: int, stride: int | tuple[int, int], padding: int, groups: int,
                 batch_normalize: bool, activation: str, *, dialect: str = "pjreddie") -> None:
        super().__init__()
        self.conv = nn.Conv2d(c, n, size, stride, padding, groups=groups, bias=not batch_normalize)
        # Darknet's initialisation: weights N(0, 1) * sqrt(2 / fan_in), biases 0.
        with torch.no_grad():
            self.conv.weight.normal_(0.0, math.sqrt(2.0 / (size * size * c // groups)))
            if self.conv.bias is not None:
                self.conv.bias.zero_()
        self.bn = DarknetBatchNorm(n, dialect) if batch_normalize else None
        self.act = Activation(activation)

    @property
    def folds_at_inference(self) -> bool:
        """AlexeyAB's detector runs its convs with BatchNorm folded in (in double): so does the eval forward."""
        return self.bn is not None and self.bn.dialect == "alexeyab"

    def forward(self, x: Tensor) -> Tensor:
        if not self.training and self.folds_at_inference:
            c = self.conv
            return self.act(F.conv2d(x, *self.folded(), c.stride, c.padding, c.dilation, c.groups))
        if self.training and darknet_order() and torch.is_grad_enabled():
            y = _DarknetOrderConv.apply(x, self.conv.weight, self.conv.bias, self.conv)
        else:
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

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        c = self.conv
        stride = c.stride[0] if c.stride[0] == c.stride[1] else tuple(c.stride)
        groups = f", groups={c.groups}" if c.groups != 1 else ""
        keys = {"weight": f"layers.{i}.conv.weight"} | ({"bias": f"layers.{i}.conv.bias"} if c.bias is not None else {})
        gen.submodule(f"conv{i}", f"nn.Conv2d({c.in_channels}, {c.out_channels}, {c.kernel_size[0]}, {stride}, "
                      f"{c.padding[0]}{groups}, bias={c.bias is not None})", keys)
        if self.folds_at_inference:
            gen.helper("\n    @staticmethod" + textwrap.indent(FOLD_SOURCE, "    "))
            bn = gen.batchnorm_params(i, c.out_channels)
            gen.line(f"x = F.conv2d({inp}, *self.fold_batchnorm(self.conv{i}.weight, {bn}), self.conv{i}.stride, "
                     f"self.conv{i}.padding, self.conv{i}.dilation, self.conv{i}.groups)")
            gen.activation(out, self.act.name)
            return
        gen.line(f"x = self.conv{i}({inp})")
        if self.bn is not None:
            gen.batchnorm(i, c.out_channels, self.bn.dialect)
        gen.activation(out, self.act.name)

    @torch.no_grad()
    def folded(self) -> tuple[Tensor, Tensor]:
        """(weight, bias) of the conv with BN folded in, for inference (`DarknetBatchNorm.folded`; AlexeyAB's
        fuse_conv_batchnorm, in double, for its cfgs)."""
        if self.bn is None:
            return self.conv.weight, self.conv.bias
        if self.folds_at_inference:
            bn = self.bn
            return fold_batchnorm_double(self.conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var)
        mult, offset = self.bn.folded()
        return self.conv.weight * mult.view(-1, 1, 1, 1), offset


# AlexeyAB options that change what a conv computes and that pydarknet does not implement.
_ALEXEYAB_UNSUPPORTED = ("antialiasing", "sway", "rotate", "stretch", "stretch_sway", "coordconv",
                         "assisted_excitation")


def _strides(sec: Section, dialect: str) -> tuple[int, int]:
    """(stride_y, stride_x): AlexeyAB reads stride_x/stride_y when both are given, else stride."""
    if dialect != "alexeyab":
        stride = sec.positive_int("stride", 1)
        return stride, stride
    stride_x, stride_y = sec.get_int("stride_x", -1), sec.get_int("stride_y", -1)
    stride = sec.positive_int("stride", 1)
    return stride_y if stride_y >= 1 else stride, stride_x if stride_x >= 1 else stride


def _alexeyab_checks(sec: Section, size: int) -> None:
    for key in _ALEXEYAB_UNSUPPORTED:
        if sec.get_float(key, 0):
            raise sec.error(f"{key}= convolutions are not supported by pydarknet", key)
    if sec.has("share_index"):
        raise sec.error("share_index= (weights shared with another layer) is not supported by pydarknet",
                        "share_index")
    if sec.get_int("cbn", 0):
        raise sec.error("cbn=1 (cross-iteration batchnorm) is not supported by pydarknet", "cbn")
    if sec.get_int("dilation", 1) > 1 and size > 1:  # AlexeyAB ignores it for 1x1 convs
        raise sec.error("dilation>1 convolutions are not supported by pydarknet", "dilation")
    for key in ("stream", "wait_stream"):  # CUDA stream choice: no effect on the numbers
        sec.get_int(key, -1)


def conv_summary(dialect: str, n: int, size: int, strides: tuple[int, int], groups: int, in_shape: Shape,
                 out: Shape, flops: int) -> str:
    """The line each Darknet prints for a conv (AlexeyAB: float BFLOPs, groups and x/y strides shown)."""
    c, h, w = in_shape.c, in_shape.h, in_shape.w
    sy, sx = strides
    if dialect != "alexeyab":
        return (f"conv  {n:5d} {size:2d} x{size:2d} /{sx:2d}  {w:4d} x{h:4d} x{c:4d}   ->  "
                f"{out.w:4d} x{out.h:4d} x{out.c:4d}  {flops / 1e9:5.3f} BFLOPs")
    filters = f"{n:5d}/{groups:4d} " if groups > 1 else f"{n:5d}      "
    kernel = f"{size:2d}x{size:2d}/{sx:2d}x{sy:2d} " if sx != sy else f"{size:2d} x{size:2d}/{sx:2d}   "
    return (f"conv  {filters}{kernel}{w:4d} x{h:4d} x{c:4d} -> {out.w:4d} x{out.h:4d} x{out.c:4d} "
            f"{alexeyab_bflops(flops):5.3f} BF")


def alexeyab_bflops(flops: int) -> float:
    """AlexeyAB keeps a layer's BFLOPs in a float (`l.bflops`) and prints and sums that float."""
    return float(np.float32(flops / 1e9))


@register("convolutional", "conv")
def build_conv(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    n = sec.positive_int("filters", 1)
    size = sec.positive_int("size", 1)
    strides = _strides(sec, ctx.dialect)
    pad = sec.get_int("pad", 0)
    padding = sec.get_int("padding", 0)
    groups = sec.positive_int("groups", 1)
    if pad:
        padding = size // 2  # Darknet: pad=1 overrides padding= with size/2
    if padding < 0:
        raise sec.error(f"padding={padding} must not be negative", "padding")
    if c % groups or n % groups:
        raise sec.error(f"groups={groups} must divide the input channels {c} and filters {n}", "groups")
    activation = activation_option(sec, "logistic", ctx.dialect)
    bn = bool(sec.get_int("batch_normalize", 0))
    for key in ("binary", "xnor"):
        if sec.get_int(key, 0):
            raise sec.error(f"{key}=1 convolutions are not supported by pydarknet", key)
    if sec.get_int("flipped", 0):
        raise sec.error("flipped=1 convolutions are not supported by pydarknet", "flipped")
    if ctx.dialect == "alexeyab":
        _alexeyab_checks(sec, size)
    out_h = (h + 2 * padding - size) // strides[0] + 1
    out_w = (w + 2 * padding - size) // strides[1] + 1
    out = Shape(n, out_h, out_w)
    flops = 2 * n * size * size * (c // groups) * out_h * out_w
    summary = conv_summary(ctx.dialect, n, size, strides, groups, ctx.in_shape, out, flops)
    stride = strides[0] if strides[0] == strides[1] else strides
    module = ConvLayer(c, n, size, stride, padding, groups, bn, activation, dialect=ctx.dialect)
    if ctx.variant == "fast":
        module = FastConv(module, ctx.in_shape)
    return Built(module, out, summary, flops)
