"""The backward of AlexeyAB's CPU build, to compare a training step with the fixtures (tests/fixtures/yolo were
made by a CPU build). pydarknet trains with the GPU (cuDNN) semantics, which are the true gradients; the CPU
build differs in three places, all of which this reproduces around a network:

- a [convolutional] layer's backward writes its input's delta (col2im_cpu_ext zeroes it first) instead of
  adding to it, and so does [sam] into its `from=` layer's delta: Darknet runs the layers' backward from the
  last to the first, so a layer read by several others keeps only the contribution of the lowest-index
  "writer" and of the "adders" below it; the gradient through the later readers is cut here;
- backward_batchnorm_layer (CPU) never computes the BatchNorm biases' gradient: they are not trained.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from pydarknet.network import Darknet

WRITES_INPUT = {"convolutional"}  # backward sets the delta of the layer it reads as its input
WRITES_SOURCE = {"sam"}  # backward sets the delta of its from= layer


def lost_reads(net: Darknet) -> dict[int, list[tuple[int, bool]]]:
    """consumer -> [(source, read as the input x (else from the outputs list))] whose gradient the CPU loses."""
    readers: dict[int, list[tuple[int, bool, bool]]] = {i: [] for i in range(len(net.layers))}
    for c, kind in enumerate(net.kinds):
        sources = net.sources[c]
        if c > 0 and (not sources or getattr(net.layers[c], "takes_input", False)):
            readers[c - 1].append((c, True, kind in WRITES_INPUT))
        for s in sources:
            readers[s].append((c, False, kind in WRITES_SOURCE))
    lost: dict[int, list[tuple[int, bool]]] = {}
    for source, reads in readers.items():
        writers = [c for c, _, writes in reads if writes]
        if writers:
            for c, as_input, _ in reads:
                if c > min(writers):
                    lost.setdefault(c, []).append((source, as_input))
    return lost


@contextmanager
def cpu_backward(net: Darknet) -> Iterator[dict[int, list[tuple[int, bool]]]]:
    """Within the block, `net` backpropagates as AlexeyAB's CPU build does; yields the reads it cuts."""
    lost = lost_reads(net)
    handles = []
    for consumer, reads in lost.items():
        def cut(module: torch.nn.Module, args: tuple, reads: list[tuple[int, bool]] = reads) -> tuple:
            args = list(args)
            for source, as_input in reads:
                if as_input:
                    args[0] = args[0].detach()
                else:
                    outputs = list(args[-1])
                    outputs[source] = outputs[source].detach()
                    args[-1] = outputs
            return tuple(args)

        handles.append(net.layers[consumer].register_forward_pre_hook(cut))
    for layer in net.layers:
        bn = getattr(layer, "bn", None)
        if bn is not None and bn.bias is not None:
            handles.append(bn.bias.register_hook(torch.zeros_like))
    try:
        yield lost
    finally:
        for h in handles:
            h.remove()
