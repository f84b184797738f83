"""[connected]: a fully connected layer on the flattened input, optional Darknet batchnorm."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from pydarknet.cfg import Section
from pydarknet.layers.activations import Activation, activation_option
from pydarknet.layers.batchnorm import DarknetBatchNorm
from pydarknet.layers.registry import Built, Context, Shape, register

if TYPE_CHECKING:
    from pydarknet.layers.registry import SourceWriter


class ConnectedLayer(nn.Module):
    def __init__(self, inputs: int, outputs: int, batch_normalize: bool, activation: str,
                 dialect: str = "pjreddie") -> None:
        super().__init__()
        self.fc = nn.Linear(inputs, outputs, bias=not batch_normalize)
        # Darknet's initialisation: weights U(-1, 1) * sqrt(2 / inputs), biases 0.
        with torch.no_grad():
            self.fc.weight.uniform_(-1.0, 1.0).mul_(math.sqrt(2.0 / inputs))
            if self.fc.bias is not None:
                self.fc.bias.zero_()
        self.bn = DarknetBatchNorm(outputs, dialect) if batch_normalize else None
        self.act = Activation(activation)

    def forward(self, x: Tensor) -> Tensor:
        y = self.fc(x.flatten(1))
        if self.bn is not None:
            y = self.bn(y)
        return self.act(y).view(y.shape[0], -1, 1, 1)

    def emit_source(self, gen: SourceWriter, i: int, inp: str, out: str) -> None:
        fc = self.fc
        keys = {"weight": f"layers.{i}.fc.weight"} | ({"bias": f"layers.{i}.fc.bias"} if fc.bias is not None else {})
        gen.submodule(f"fc{i}", f"nn.Linear({fc.in_features}, {fc.out_features}, bias={fc.bias is not None})", keys)
        gen.line(f"x = self.fc{i}({inp}.flatten(1))")
        if self.bn is not None:
            gen.batchnorm(i, fc.out_features, self.bn.dialect)
        gen.activation("x", self.act.name)
        gen.line(f"{out} = x.view(x.shape[0], -1, 1, 1)")

    def darknet_params(self) -> list[Tensor]:
        # Darknet order: biases, weights (outputs x inputs), then scales, mean, variance.
        if self.bn is not None:
            return [self.bn.bias, self.fc.weight, self.bn.weight, self.bn.running_mean, self.bn.running_var]
        return [self.fc.bias, self.fc.weight]


@register("connected")
def build_connected(sec: Section, ctx: Context) -> Built:
    inputs = ctx.in_shape.size
    outputs = sec.positive_int("output", 1)
    activation = activation_option(sec, "logistic", ctx.dialect)
    bn = bool(sec.get_int("batch_normalize", 0))
    summary = f"connected                            {inputs:4d}  ->  {outputs:4d}"
    flops = 0 if ctx.dialect == "alexeyab" else 2 * inputs * outputs  # AlexeyAB counts no BFLOPs for it
    return Built(ConnectedLayer(inputs, outputs, bn, activation, ctx.dialect), Shape(outputs, 1, 1), summary,
                 flops)
