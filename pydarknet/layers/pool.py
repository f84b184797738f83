"""[maxpool] with Darknet's padding rule (AlexeyAB: separate x/y strides, or a max across channel groups),
and [avgpool] (global average)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.conv import alexeyab_bflops
from pydarknet.layers.registry import Built, Context, Shape, register

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


class MaxPoolLayer(nn.Module):
    """Darknet's window starts at `i*stride - padding/2`; cells outside the input count as -FLT_MAX.
    `stride` is the x stride, `stride_y` the y one (equal unless AlexeyAB's stride_x/stride_y differ)."""

    def __init__(self, size: int, stride: int, pads: tuple[int, int, int, int], stride_y: int | None = None) -> None:
        super().__init__()
        self.size, self.stride, self.pads = size, stride, pads
        self.stride_y = stride if stride_y is None else stride_y

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, (self.stride_y, self.stride))

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        if any(self.pads):  # -inf padding: outside cells never win, as Darknet's -FLT_MAX
            inp = f'F.pad({inp}, {tuple(self.pads)}, value=float("-inf"))'
        gen.emit(out, f"F.max_pool2d({inp}, {self.size}, {(self.stride_y, self.stride)})")


class DepthMaxPoolLayer(nn.Module):
    """AlexeyAB's maxpool_depth=1: output channel g is the max over input channels g, g+out_c, g+2*out_c, ...
    at each position (no spatial pooling)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.rows = -(-in_channels // out_channels)
        # the last row of channel groups may be short: padded with -inf, which never wins
        self.missing = self.rows * out_channels - in_channels

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        if self.missing:
            x = F.pad(x, (0, 0, 0, 0, 0, self.missing), value=float("-inf"))
        return x.reshape(b, self.rows, self.out_channels, h, w).amax(1)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        gen.line(f"b, _, h, w = {inp}.shape")
        if self.missing:
            inp = f'F.pad({inp}, (0, 0, 0, 0, 0, {self.missing}), value=float("-inf"))'
        gen.emit(out, f"{inp}.reshape(b, {self.rows}, {self.out_channels}, h, w).amax(1)")


def _strides(sec: Section, dialect: str) -> tuple[int, int]:
    """(stride_y, stride_x); AlexeyAB reads stride_x and stride_y, each defaulting to stride."""
    stride = sec.positive_int("stride", 1)
    if dialect != "alexeyab":
        return stride, stride
    return sec.positive_int("stride_y", stride), sec.positive_int("stride_x", stride)


def _depth_maxpool(sec: Section, ctx: Context, size: int, stride: int) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    out_c = sec.positive_int("out_channels", 1)
    sec.get_int("padding", size - 1)  # read by Darknet, unused by the depth max
    # make_maxpool_layer's BFLOPs and line (it counts size*size*c per output position all the same)
    flops = size * size * c * h * w
    summary = (f"max-depth         {size:2d}x{size:2d}/{stride:2d}   {w:4d} x{h:4d} x{c:4d} -> "
               f"{w:4d} x{h:4d} x{out_c:4d} {alexeyab_bflops(flops):5.3f} BF")
    return Built(DepthMaxPoolLayer(c, out_c), Shape(out_c, h, w), summary, flops)


class HalvingMaxPool(MaxPoolLayer):
    """Inference variant of a 2 x 2 / 2 max-pool: on an even unpadded NHWC map, two pairwise maxima.
    torch's CPU max_pool2d also makes an int64 index map (for yolov2-voc's first pool 11 MB)."""

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        if any(self.pads) or h % 2 or w % 2 or not x.is_contiguous(memory_format=torch.channels_last):
            return super().forward(x)
        rows = x.permute(0, 2, 3, 1).view(n, h // 2, 2, w, c)
        cols = torch.maximum(rows[:, :, 0], rows[:, :, 1]).unflatten(2, (w // 2, 2))
        return torch.maximum(cols[:, :, :, 0], cols[:, :, :, 1]).permute(0, 3, 1, 2)


@register("maxpool")
def build_maxpool(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    stride_y, stride_x = _strides(sec, ctx.dialect)
    size = sec.positive_int("size", sec.get_int("stride", 1))
    if ctx.dialect == "alexeyab":
        if sec.get_int("antialiasing", 0):
            raise sec.error("antialiasing= maxpools are not supported by pydarknet", "antialiasing")
        if sec.get_int("maxpool_depth", 0):
            return _depth_maxpool(sec, ctx, size, stride_x)
    padding = sec.get_int("padding", size - 1)
    if padding < 0:
        raise sec.error(f"padding={padding} must not be negative", "padding")
    out_w = (w + padding - size) // stride_x + 1
    out_h = (h + padding - size) // stride_y + 1
    before = padding // 2
    # Pad the right/bottom just enough for the last window; the extra cells never win the max.
    after_w = max(0, (out_w - 1) * stride_x + size - before - w)
    after_h = max(0, (out_h - 1) * stride_y + size - before - h)
    flops = 0
    if ctx.dialect == "alexeyab":
        flops = size * size * c * out_h * out_w
        window = (f"{size:2d}x{size:2d}/{stride_x:2d}x{stride_y:2d} " if stride_x != stride_y
                  else f" {size:2d}x{size:2d}/{stride_x:2d}   ")
        summary = (f"max              {window}{w:4d} x{h:4d} x{c:4d} -> {out_w:4d} x{out_h:4d} x{c:4d} "
                   f"{alexeyab_bflops(flops):5.3f} BF")
    else:
        summary = (f"max          {size} x {size} / {stride_x}  {w:4d} x{h:4d} x{c:4d}   ->  "
                   f"{out_w:4d} x{out_h:4d} x{c:4d}")
    halving = ctx.variant == "fast" and (size, stride_x, stride_y) == (2, 2, 2)
    module = (HalvingMaxPool if halving else MaxPoolLayer)(size, stride_x, (before, after_w, before, after_h),
                                                           stride_y)
    return Built(module, Shape(c, out_h, out_w), summary, flops)


class AvgPoolLayer(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        gen.emit(out, f"{inp}.mean(dim=(2, 3), keepdim=True)")


@register("avgpool")
def build_avgpool(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    if ctx.dialect == "alexeyab":
        summary = f"avg                          {w:4d} x{h:4d} x{c:4d} ->   {c:4d}"
    else:
        summary = f"avg                     {w:4d} x{h:4d} x{c:4d}   ->  {c:4d}"
    return Built(AvgPoolLayer(), Shape(c, 1, 1), summary)
