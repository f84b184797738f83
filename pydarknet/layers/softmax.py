"""[softmax]: grouped softmax with temperature over the flattened input, or WordTree groups."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.errors import DarknetError
from pydarknet.layers.registry import Built, Context, Shape, register
from pydarknet.paths import resolve_path

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


class _DarknetSoftmax(torch.autograd.Function):
    """Softmax whose backward hands the gradient to its input unchanged, as Darknet's backward_softmax_layer:
    the trainer's delta (truth - p, softmax_x_ent's) is already the gradient at the logits, and autograd's
    softmax backward would multiply it by the Jacobian once more (with 1000 classes, ~1e5 times smaller)."""

    @staticmethod
    def forward(ctx, x, layer):  # noqa: ANN001
        return layer.activate(x)

    @staticmethod
    def backward(ctx, grad):  # noqa: ANN001
        return grad, None


class SoftmaxLayer(nn.Module):
    def __init__(self, groups: int, temperature: float, tree) -> None:  # noqa: ANN001
        super().__init__()
        self.groups, self.temperature, self.tree = groups, temperature, tree

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if torch.is_grad_enabled() and flat.requires_grad:
            return _DarknetSoftmax.apply(flat, self)
        return self.activate(flat)

    def activate(self, flat: Tensor) -> Tensor:
        if self.tree is not None:
            from pydarknet.wordtree import tree_softmax

            return tree_softmax(flat / self.temperature, self.tree, dim=1)
        grouped = flat.view(flat.shape[0], self.groups, -1)
        return torch.softmax(grouped / self.temperature, dim=2).view_as(flat)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        # x / 1.0 is exact, so a temperature of 1 is left out.
        temp = "" if self.temperature == 1 else f" / {self.temperature!r}"
        if self.tree is not None:
            gen.emit(out, f"self.tree_softmax({inp}.flatten(1){temp}, {gen.tree(i, self.tree)}, 1)")
            return
        gen.line(f"x = {inp}.flatten(1)")
        gen.emit(out, f"torch.softmax(x.view(x.shape[0], {self.groups}, -1){temp}, dim=2).view_as(x)")


@register("softmax")
def build_softmax(sec: Section, ctx: Context) -> Built:
    inputs = ctx.in_shape.size
    groups = sec.positive_int("groups", 1)
    if inputs % groups:
        raise sec.error(f"groups={groups} does not divide the {inputs} inputs", "groups")
    temperature = sec.get_float("temperature", 1.0)
    if temperature == 0:
        raise sec.error("temperature=0 divides by zero", "temperature")
    tree = None
    name = sec.get_str("tree")
    if name is not None:
        from pydarknet.wordtree import read_tree

        try:
            tree = read_tree(resolve_path(name, sec.file))
        except DarknetError as err:
            raise DarknetError(f"tree={name}: {err}", sec.file, sec.options["tree"].line) from None
        if tree.n != inputs:
            raise sec.error(f"tree={name} has {tree.n} classes but the input has {inputs} values", "tree")
    sec.get_float("spatial", 0.0)
    sec.get_int("noloss", 0)
    summary = f"softmax                                        {inputs:4d}"
    return Built(SoftmaxLayer(groups, temperature, tree), Shape(inputs, 1, 1), summary)
