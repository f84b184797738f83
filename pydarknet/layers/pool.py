"""[maxpool] with Darknet's padding rule, and [avgpool] (global average)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.registry import Built, Context, Shape, register


class MaxPoolLayer(nn.Module):
    """Darknet's window starts at `i*stride - padding/2`; cells outside the input count as -FLT_MAX."""

    def __init__(self, size: int, stride: int, pads: tuple[int, int, int, int]) -> None:
        super().__init__()
        self.size, self.stride, self.pads = size, stride, pads

    def forward(self, x: Tensor) -> Tensor:
        if any(self.pads):
            x = F.pad(x, self.pads, value=float("-inf"))
        return F.max_pool2d(x, self.size, self.stride)


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
    stride = sec.positive_int("stride", 1)
    size = sec.positive_int("size", stride)
    padding = sec.get_int("padding", size - 1)
    if padding < 0:
        raise sec.error(f"padding={padding} must not be negative", "padding")
    out_w = (w + padding - size) // stride + 1
    out_h = (h + padding - size) // stride + 1
    before = padding // 2
    # Pad the right/bottom just enough for the last window; the extra cells never win the max.
    after_w = max(0, (out_w - 1) * stride + size - before - w)
    after_h = max(0, (out_h - 1) * stride + size - before - h)
    summary = (f"max          {size} x {size} / {stride}  {w:4d} x{h:4d} x{c:4d}   ->  "
               f"{out_w:4d} x{out_h:4d} x{c:4d}")
    pool = HalvingMaxPool if ctx.variant == "fast" and (size, stride) == (2, 2) else MaxPoolLayer
    module = pool(size, stride, (before, after_w, before, after_h))
    return Built(module, Shape(c, out_h, out_w), summary)


class AvgPoolLayer(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


@register("avgpool")
def build_avgpool(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    summary = f"avg                     {w:4d} x{h:4d} x{c:4d}   ->  {c:4d}"
    return Built(AvgPoolLayer(), Shape(c, 1, 1), summary)
