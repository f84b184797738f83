"""AlexeyAB's attention layers, which multiply an earlier output by their input: [scale_channels] (a
per-channel or per-position factor, squeeze-and-excitation) and [sam] (elementwise, spatial attention)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.activations import Activation, activation_option
from pydarknet.layers.registry import Built, Context, register
from pydarknet.layers.route import resolve_index

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


class ScaleLayer(nn.Module):
    """out = activation(from * x), x broadcast over the from output: (C, 1, 1) factors per channel, or
    (1, H, W) per position (`scale_wh=1`), or the same shape ([sam])."""

    takes_input = True  # called as layer(x, outputs)

    def __init__(self, source: int, activation: str) -> None:
        super().__init__()
        self.sources = [source]
        self.act = Activation(activation)

    def forward(self, x: Tensor, outputs: list[Tensor]) -> Tensor:
        return self.act(outputs[self.sources[0]] * x)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        gen.line(f"x = x{self.sources[0]} * {inp}")
        gen.activation(out, self.act.name)


def _build(sec: Section, ctx: Context) -> tuple[int, str]:
    if not sec.has("from"):
        raise sec.error(f"{sec.kind} needs from=")
    source = resolve_index(sec, ctx, sec.get_int("from", 0), "from")
    return source, activation_option(sec, "linear", ctx.dialect)


@register("scale_channels")
def build_scale_channels(sec: Section, ctx: Context) -> Built:
    source, activation = _build(sec, ctx)
    src, cur = ctx.shapes[source], ctx.in_shape
    scale_wh = bool(sec.get_int("scale_wh", 0))
    # make_scale_channels_layer's asserts
    if scale_wh and (cur.c != 1 or (cur.w, cur.h) != (src.w, src.h)):
        raise sec.error(f"scale_wh=1 needs a 1-channel {src.w}x{src.h} input to scale layer {source}, got "
                        f"{cur.w}x{cur.h}x{cur.c}", "scale_wh")
    if not scale_wh and ((cur.w, cur.h) != (1, 1) or cur.c != src.c):
        raise sec.error(f"needs a 1x1x{src.c} input to scale the channels of layer {source}, got "
                        f"{cur.w}x{cur.h}x{cur.c}", "from")
    return Built(ScaleLayer(source, activation), src, f"scale Layer: {source}", sources=[source])


@register("sam")
def build_sam(sec: Section, ctx: Context) -> Built:
    source, activation = _build(sec, ctx)
    src, cur = ctx.shapes[source], ctx.in_shape
    if src != cur:  # make_sam_layer's asserts
        raise sec.error(f"layer {source} is {src.w}x{src.h}x{src.c}, the input {cur.w}x{cur.h}x{cur.c}: "
                        "[sam] multiplies equal shapes", "from")
    # make_sam_layer prints the same line as make_scale_channels_layer
    return Built(ScaleLayer(source, activation), src, f"scale Layer: {source}", sources=[source])
