"""Darknet's activation functions by cfg name: one table of torch expressions, from which both the runtime
callables and the source `pydarknet codegen` writes are made, so that the two cannot drift apart.

pjreddie's Darknet knows the first fourteen (src/activations.h); AlexeyAB's adds the rest. AlexeyAB's
elementwise `activate()` (CPU) has no case for relu6 and returns 0; its GPU kernel computes min(max(x, 0), 6),
which is what pydarknet implements. swish, mish, hard_mish and normalize_channels* are computed by special
code only in some layers; elsewhere both its CPU and GPU code output 0, so pydarknet refuses them there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from pydarknet.cfg import Section


def _gelu_gradient(y: Tensor) -> Tensor:
    """AlexeyAB's gelu_gradient, which both its CPU and GPU backward evaluate at the layer's output (not at its
    input, as the derivative would be): kept, since training with it is what Darknet does."""
    u = 0.0356774 * y ** 3 + 0.797885 * y
    sech = 2 / (torch.exp(u) + torch.exp(-u))
    return 0.5 * torch.tanh(u) + (0.0535161 * y ** 3 + 0.398942 * y) * sech ** 2 + 0.5


class _OutputGradient(torch.autograd.Function):
    """y = fn(x) whose backward multiplies by `gradient(y)`: Darknet's gradient_array."""

    @staticmethod
    def forward(ctx, x: Tensor, fn: Callable[[Tensor], Tensor],  # noqa: ANN001
                gradient: Callable[[Tensor], Tensor]) -> Tensor:
        y = fn(x)
        ctx.save_for_backward(y)
        ctx.gradient = gradient
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None, None]:  # noqa: ANN001
        (y,) = ctx.saved_tensors
        return grad * ctx.gradient(y), None, None


def _with_gradient(fn: Callable[[Tensor], Tensor], gradient: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """`fn` with Darknet's backward when a gradient is wanted (plain `fn` for inference, tracing, export)."""

    def activate(x: Tensor) -> Tensor:
        if x.requires_grad and torch.is_grad_enabled() and not torch.jit.is_tracing():
            return _OutputGradient.apply(x, fn, gradient)
        return fn(x)

    return activate


@dataclass(frozen=True)
class ActivationDef:
    code: str  # a torch expression of `{x}` (names available: torch, F)
    alexeyab: bool = False  # only AlexeyAB's Darknet knows it
    # Section kinds in which AlexeyAB's Darknet computes it (None: wherever an activation is read).
    only_in: frozenset[str] | None = None
    # Darknet's derivative where it is not the true one, as a function of the activation's OUTPUT
    # (gradient_array(l.output, ...)); None: autograd's derivative is Darknet's.
    gradient: Callable[[Tensor], Tensor] | None = None


_CONV = frozenset({"convolutional", "conv"})
_CONV_SHORTCUT = _CONV | {"shortcut"}

ACTIVATION_DEFS: dict[str, ActivationDef] = {
    "linear": ActivationDef("{x}"),
    "logistic": ActivationDef("torch.sigmoid({x})"),
    "loggy": ActivationDef("2 * torch.sigmoid({x}) - 1"),
    "relu": ActivationDef("F.relu({x})"),
    "elu": ActivationDef("torch.where({x} >= 0, {x}, torch.exp({x}) - 1)"),
    "selu": ActivationDef("torch.where({x} >= 0, 1.0507 * {x}, 1.0507 * 1.6732 * (torch.exp({x}) - 1))"),
    "relie": ActivationDef("torch.where({x} > 0, {x}, 0.01 * {x})"),
    "ramp": ActivationDef("{x} * ({x} > 0) + 0.1 * {x}"),
    "leaky": ActivationDef("F.leaky_relu({x}, 0.1)"),
    "tanh": ActivationDef("torch.tanh({x})"),
    "plse": ActivationDef("torch.where({x} < -4, 0.01 * ({x} + 4), "
                          "torch.where({x} > 4, 0.01 * ({x} - 4) + 1, 0.125 * {x} + 0.5))"),
    "stair": ActivationDef("torch.where(torch.floor({x}) % 2 == 0, torch.floor({x} / 2), "
                           "{x} - torch.floor({x}) + torch.floor({x} / 2))"),
    "hardtan": ActivationDef("torch.clamp({x}, -1, 1)"),
    "lhtan": ActivationDef("torch.where({x} < 0, 0.001 * {x}, torch.where({x} > 1, 0.001 * ({x} - 1) + 1, {x}))"),
    "relu6": ActivationDef("torch.clamp({x}, 0, 6)", alexeyab=True),  # the GPU kernel's (see above)
    # Darknet's constants (not torch's tanh-approximate GELU, whose differ in the 7th digit).
    "gelu": ActivationDef("0.5 * {x} * (1 + torch.tanh(0.797885 * {x} + 0.035677 * {x} ** 3))", alexeyab=True,
                          gradient=_gelu_gradient),
    # Forward as leaky; only AlexeyAB's GPU backward differs (it divides by leaky's slope): autograd here.
    "revleaky": ActivationDef("F.leaky_relu({x}, 0.1)", alexeyab=True),
    "swish": ActivationDef("{x} * torch.sigmoid({x})", alexeyab=True, only_in=_CONV_SHORTCUT),
    # softplus with Darknet's threshold 20 (x above it: x itself).
    "mish": ActivationDef("{x} * torch.tanh(F.softplus({x}, 1, 20))", alexeyab=True, only_in=_CONV_SHORTCUT),
    # x*x/2 + x on (-2, 0], x above, 0 below, written as one product.
    "hard_mish": ActivationDef("{x} * torch.clamp({x} / 2 + 1, 0, 1)", alexeyab=True, only_in=_CONV),
    # Across the channels (dim 1) of each position, with Darknet's 0.0001 added to the sum.
    "normalize_channels": ActivationDef("F.relu({x}) / (F.relu({x}).sum(1, keepdim=True) + 0.0001)",
                                        alexeyab=True, only_in=_CONV),
    "normalize_channels_softmax": ActivationDef(
        "torch.exp({x}) / (torch.exp({x}).sum(1, keepdim=True) + 0.0001)", alexeyab=True, only_in=_CONV),
    "normalize_channels_softmax_maxval": ActivationDef(
        "torch.exp({x} - {x}.amax(1, keepdim=True)) / "
        "(torch.exp({x} - {x}.amax(1, keepdim=True)).sum(1, keepdim=True) + 0.0001)", alexeyab=True, only_in=_CONV),
}


def compile_expression(code: str, *names: str) -> Callable[..., Tensor]:
    """A function of `names` that evaluates `code` (written with torch and F): the one place where table
    text becomes runtime code, so that what codegen writes is what runs."""
    return eval(f"lambda {', '.join(names)}: {code}", {"torch": torch, "F": F})  # noqa: S307 - our own table


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    name: _with_gradient(compile_expression(d.code.format(x="x"), "x"), d.gradient) if d.gradient
    else compile_expression(d.code.format(x="x"), "x") for name, d in ACTIVATION_DEFS.items()
}


def activation_code(name: str, x: str) -> str:
    """The activation as a torch expression of the variable `x` (what codegen writes)."""
    return ACTIVATION_DEFS[name].code.format(x=x)


class Activation(torch.nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def activation_option(section: Section, default: str = "logistic", dialect: str = "pjreddie") -> str:
    """The section's `activation=`, checked against what the cfg's Darknet computes in this kind of layer."""
    name = section.get_str("activation", default)
    known = [n for n, d in ACTIVATION_DEFS.items() if dialect == "alexeyab" or not d.alexeyab]
    if name not in known:
        raise section.error(f"unknown activation {name!r} (Darknet knows: {', '.join(known)})", "activation")
    where = ACTIVATION_DEFS[name].only_in
    if where is not None and section.kind not in where:
        places = " and ".join(sorted(f"[{k}]" for k in where if k != "conv"))
        raise section.error(f"activation={name} is computed by AlexeyAB's Darknet only in {places} "
                            "(elsewhere it outputs 0)", "activation")
    return name
