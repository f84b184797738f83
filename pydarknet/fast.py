"""Preparing the fast variant that `pydarknet.load` returns by default (`exact=False`).

The network is built with each layer's inference variant (`build_network(cfg, "fast")`): convolutions as
`pydarknet.layers.fast_conv.FastConv` (BatchNorm folded with Darknet's formula; on the CPU oneDNN kernels
with pre-packed weights and fused activations, Winograd where it pays, planned per input size), 2 x 2 / 2
max-pools without an index map. Outputs move by float rounding only (tests/test_fast_path.py states the
tolerance). It is for inference: it cannot be trained or saved. Measurements: benchmarks/README.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TypeVar

from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from pydarknet.layers.fast_conv import FastConv
from pydarknet.malloc import trim_heap

Net = TypeVar("Net", bound=nn.Module)


class _SkipInit(TorchFunctionMode):
    """Random initialisation as a no-op: wasted work when a weights file overwrites every tensor."""

    _INIT = {Tensor.normal_, Tensor.uniform_, Tensor.zero_, nn.init.kaiming_uniform_, nn.init.uniform_}

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
        if func in self._INIT:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **(kwargs or {}))


@contextlib.contextmanager
def skip_init() -> Iterator[None]:
    """Within this block, building a network leaves its weights uninitialised (fill them all after)."""
    with _SkipInit():
        yield


def prepare(net: Net, winograd: bool = True) -> Net:
    """Pack every fast conv of `net` for the input size its cfg gives (fold them off the CPU), so that
    the first call runs at full speed; the plain weights go. Largest weights first: each packed conv
    holds more than the weights it replaces, so the memory in use peaks at the end, where the
    temporaries of a small layer add little to it. `winograd=False` keeps every conv direct."""
    convs = [m for m in net.modules() if isinstance(m, FastConv)]
    for conv in sorted(convs, key=lambda c: -c.weights):
        conv.winograd = winograd
        conv.prepare()
        trim_heap()
    return net
