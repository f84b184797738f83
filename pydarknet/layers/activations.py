"""Darknet's activation functions by cfg name (src/activations.h), as torch callables."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor


def _stair(x: Tensor) -> Tensor:
    n = torch.floor(x)
    even = torch.remainder(n, 2) == 0
    return torch.where(even, torch.floor(x / 2), (x - n) + torch.floor(x / 2))


def _plse(x: Tensor) -> Tensor:
    return torch.where(x < -4, 0.01 * (x + 4), torch.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))


def _lhtan(x: Tensor) -> Tensor:
    return torch.where(x < 0, 0.001 * x, torch.where(x > 1, 0.001 * (x - 1) + 1, x))


ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "linear": lambda x: x,
    "logistic": torch.sigmoid,
    "loggy": lambda x: 2 * torch.sigmoid(x) - 1,
    "relu": F.relu,
    "elu": lambda x: torch.where(x >= 0, x, torch.exp(x) - 1),
    "selu": lambda x: torch.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * (torch.exp(x) - 1)),
    "relie": lambda x: torch.where(x > 0, x, 0.01 * x),
    "ramp": lambda x: x * (x > 0) + 0.1 * x,
    "leaky": lambda x: F.leaky_relu(x, 0.1),
    "tanh": torch.tanh,
    "plse": _plse,
    "stair": _stair,
    "hardtan": lambda x: torch.clamp(x, -1, 1),
    "lhtan": _lhtan,
}


class Activation(torch.nn.Module):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name
        self.fn = ACTIVATIONS[name]

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)

    def extra_repr(self) -> str:
        return self.name


def activation_option(section, default: str = "logistic") -> str:  # noqa: ANN001 - a cfg Section
    name = section.get_str("activation", default)
    if name not in ACTIVATIONS:
        raise section.error(f"unknown activation {name!r} (Darknet knows: {', '.join(ACTIVATIONS)})",
                            "activation")
    return name
