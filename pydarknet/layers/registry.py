"""One registry from cfg section name to builder: `builder(section, ctx) -> Built`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from torch import nn

from pydarknet.cfg import Section
from pydarknet.memory import check_activations, refuse_large_tensors
from pydarknet.netconfig import NetConfig

if TYPE_CHECKING:
    from pydarknet.wordtree import Tree


class SourceWriter(Protocol):
    """What a layer's `emit_source(gen, index, input name, output name)` writes its forward into: the same
    torch ops as its `forward`, as source (`pydarknet.export.codegen` implements it)."""

    def line(self, code: str) -> None: ...

    def emit(self, target: str, expr: str) -> None: ...

    def activation(self, out: str, name: str, x: str = "x") -> None: ...

    def batchnorm(self, i: int, n: int, dialect: str) -> None: ...

    def param(self, name: str, key: str, make: str, buffer: bool = False) -> None: ...

    def submodule(self, name: str, make: str, keys: dict[str, str]) -> None: ...

    def tree(self, i: int, tree: Tree) -> str: ...


@dataclass(frozen=True)
class Shape:
    """Darknet's (c, h, w) of a layer output; flat outputs (softmax, connected) have h = w = 1."""

    c: int
    h: int
    w: int

    @property
    def size(self) -> int:
        return self.c * self.h * self.w


# Implementations a network can be built with (Context.variant).
VARIANTS = ("exact", "fast")


@dataclass
class Context:
    """What a builder may look at: its index, the shapes before it, the [net] batch, the cfg path, which
    Darknet's semantics the cfg follows and which implementation (variant) the network is built with."""

    index: int
    in_shape: Shape
    shapes: list[Shape]
    cfg_path: Path
    batch: int = 1
    # "pjreddie" (YOLOv2 era, pjreddie/darknet) or "alexeyab" (the [yolo] family, AlexeyAB/darknet).
    dialect: str = "pjreddie"
    # "exact": the trainable layers, Darknet's arithmetic; "fast": inference-only variants (BN folded,
    # packed kernels) that give the same outputs within float rounding.
    variant: str = "exact"
    # The [net] options (input size, letter_box, ...): AlexeyAB's [yolo] decodes and letterboxes by them.
    net: NetConfig | None = None


@dataclass
class Built:
    module: nn.Module
    out: Shape
    summary: str  # the line Darknet prints for the layer, after the index column
    flops: int = 0  # 2*MACs, as Darknet counts BFLOPs
    sources: list[int] = field(default_factory=list)  # earlier layers whose outputs this one reads


Builder = Callable[[Section, Context], Built]
BUILDERS: dict[str, Builder] = {}

# Sections the C Darknet knows that pydarknet does not build (yet): named in a clear error.
KNOWN_UNSUPPORTED = {
    "local", "deconvolutional", "rnn", "gru", "lstm", "crnn", "crop", "normalization", "lrn",
    "batchnorm", "iseg", "detection", "l2norm", "logistic", "activation", "xnor",
    # AlexeyAB's
    "Gaussian_yolo", "implicit", "contrastive", "local_avgpool", "local_avg", "reorg3d", "conv_lstm",
    "history", "empty", "silence",
}


def register(*names: str) -> Callable[[Builder], Builder]:
    def wrap(builder: Builder) -> Builder:
        for name in names:
            BUILDERS[name] = builder
        return builder

    return wrap


def build_layer(section: Section, ctx: Context) -> Built:
    builder = BUILDERS.get(section.kind)
    if builder is None:
        if section.kind in KNOWN_UNSUPPORTED:
            raise section.error("is a Darknet layer that pydarknet does not support yet")
        raise section.error("unknown section type")
    with refuse_large_tensors(section):
        built = builder(section, ctx)
    if built.out.c <= 0 or built.out.h <= 0 or built.out.w <= 0:
        raise section.error(
            f"gives an empty output {built.out.c}x{built.out.h}x{built.out.w} "
            f"from input {ctx.in_shape.c}x{ctx.in_shape.h}x{ctx.in_shape.w}"
        )
    check_activations(section, [*ctx.shapes, built.out])
    return built
