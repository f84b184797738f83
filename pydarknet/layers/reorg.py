"""[reorg]: Darknet's reorg_cpu index mapping (not a standard space-to-depth)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.registry import Built, Context, Shape, register

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


def reorg(x: Tensor, s: int) -> Tensor:
    """Forward reorg: reads the (C,H,W) input as if it were (C/s², H*s, W*s) (fixtures README)."""
    b, c, h, w = x.shape
    oc = c // (s * s)
    y = x.reshape(b, oc, h, s, w, s).permute(0, 3, 5, 1, 2, 4)
    return y.reshape(b, c * s * s, h // s, w // s)


def reorg_reverse(x: Tensor, s: int) -> Tensor:
    """`reverse=1`: the inverse mapping, (C,H,W) -> (C/s², H*s, W*s)."""
    b, c, h, w = x.shape
    oc = c // (s * s)
    y = x.reshape(b, s, s, oc, h, w).permute(0, 3, 4, 1, 5, 2)
    return y.reshape(b, oc, h * s, w * s)


class ReorgLayer(nn.Module):
    def __init__(self, stride: int, reverse: bool) -> None:
        super().__init__()
        self.stride, self.reverse = stride, reverse

    def forward(self, x: Tensor) -> Tensor:
        return reorg_reverse(x, self.stride) if self.reverse else reorg(x, self.stride)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        s = self.stride
        gen.line(f"b, c, h, w = {inp}.shape")
        if self.reverse:
            gen.emit(out, f"{inp}.reshape(b, {s}, {s}, c // {s * s}, h, w).permute(0, 3, 4, 1, 5, 2)"
                          f".reshape(b, c // {s * s}, h * {s}, w * {s})")
        else:  # Darknet's reorg reads the input as (C/s², H*s, W*s): not a space-to-depth
            gen.emit(out, f"{inp}.reshape(b, c // {s * s}, h, {s}, w, {s}).permute(0, 3, 5, 1, 2, 4)"
                          f".reshape(b, c * {s * s}, h // {s}, w // {s})")


@register("reorg")
def build_reorg(sec: Section, ctx: Context) -> Built:
    c, h, w = ctx.in_shape.c, ctx.in_shape.h, ctx.in_shape.w
    s = sec.positive_int("stride", 1)
    reverse = bool(sec.get_int("reverse", 0))
    for key in ("flatten", "extra"):
        if sec.get_int(key, 0):
            raise sec.error(f"{key}=1 reorg is not supported by pydarknet", key)
    if reverse:
        if c % (s * s):
            raise sec.error(f"reverse reorg needs channels ({c}) divisible by stride² ({s * s})", "stride")
        out = Shape(c // (s * s), h * s, w * s)
    else:
        if h % s or w % s:
            raise sec.error(f"input {w}x{h} is not divisible by stride {s}", "stride")
        if c % (s * s):
            # reorg_cpu reads the input as (C/s², H*s, W*s): C must split evenly.
            raise sec.error(f"input channels ({c}) are not divisible by stride² ({s * s})", "stride")
        out = Shape(c * s * s, h // s, w // s)
    # AlexeyAB's Darknet runs [reorg] as its reorg_old layer (pjreddie's semantics), and names it so
    name = f"reorg_old              /{s:2d}" if ctx.dialect == "alexeyab" else f"reorg              / {s}"
    summary = f"{name}  {w:4d} x{h:4d} x{c:4d}   ->  {out.w:4d} x{out.h:4d} x{out.c:4d}"
    return Built(ReorgLayer(s, reverse), out, summary)
