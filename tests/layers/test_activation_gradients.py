"""Activations whose training gradient is Darknet's own, not the true derivative (gelu: AlexeyAB evaluates its
derivative at the layer's output); the others are gradchecked in test_alexeyab_layers.py."""

from __future__ import annotations

import io

import torch

from pydarknet.layers.activations import ACTIVATION_DEFS, ACTIVATIONS, Activation, compile_expression


def _darknet_gelu_gradient(y: torch.Tensor) -> torch.Tensor:
    """AlexeyAB's gelu_gradient(x), called with x = the output (gradient_array(l.output, ...))."""
    u = 0.0356774 * y ** 3 + 0.797885 * y
    sech = 2 / (torch.exp(u) + torch.exp(-u))
    return 0.5 * torch.tanh(u) + (0.0535161 * y ** 3 + 0.398942 * y) * sech ** 2 + 0.5


def test_gelu_backward_is_darknets():
    x = torch.linspace(-4, 4, 81, requires_grad=True)
    y = ACTIVATIONS["gelu"](x)
    grad = torch.rand(81)
    y.backward(grad)
    torch.testing.assert_close(x.grad, grad * _darknet_gelu_gradient(y.detach()))
    plain = compile_expression(ACTIVATION_DEFS["gelu"].code.format(x="x"), "x")  # the formula, autograd's way
    true = torch.autograd.functional.jacobian(plain, x.detach()).diagonal()
    assert (x.grad - grad * true).abs().max() > 0.05  # not the true derivative (at x = -1: 0.33 vs -0.08)


def test_gelu_forward_unchanged_and_traceable():
    x = torch.linspace(-4, 4, 81)
    expected = 0.5 * x * (1 + torch.tanh(0.797885 * x + 0.035677 * x ** 3))
    torch.testing.assert_close(ACTIVATIONS["gelu"](x), expected)
    torch.testing.assert_close(ACTIVATIONS["gelu"](x.clone().requires_grad_()).detach(), expected)
    traced = torch.jit.trace(Activation("gelu"), (x.clone().requires_grad_(),))
    buf = io.BytesIO()
    torch.jit.save(traced, buf)  # no Python autograd Function in the graph
    torch.testing.assert_close(traced(x), expected)
