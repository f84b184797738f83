"""pydarknet: original Darknet (YOLOv2 era) models in PyTorch with Darknet's exact semantics."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from pydarknet.errors import DarknetError
from pydarknet.malloc import keep_freed_memory
from pydarknet.network import Darknet, build_network

__all__ = ["Darknet", "DarknetError", "keep_freed_memory", "load"]
__version__ = "0.1.0"


def load(cfg: str | Path, weights: str | Path | None = None, *, device: str | torch.device = "cpu",
         exact: bool = False, upto: int | None = None) -> Darknet:
    """Build the network of a Darknet `.cfg`, fill it from a `.weights` file, put it in eval mode.

    By default the network is built for inference (`pydarknet.fast`): outputs within float rounding of
    Darknet's arithmetic, faster, at any input size; it cannot be trained or saved. `exact=True` gives the
    trainable network with Darknet's arithmetic (training, `save_weights`, bit parity). `upto` loads only
    the first `upto` layers' weights (Darknet's `partial` files)."""
    if exact:
        net = build_network(cfg)
        if weights is not None:
            net.load_weights(weights, upto=upto)
        return net.to(torch.device(device)).eval()
    from pydarknet.fast import prepare, skip_init

    with skip_init() if weights is not None and upto is None else contextlib.nullcontext():
        net = build_network(cfg, "fast")
    if weights is not None:
        net.load_weights(weights, upto=upto)
    return prepare(net.to(torch.device(device)).eval())
