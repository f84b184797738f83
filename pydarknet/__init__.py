"""pydarknet: original Darknet (YOLOv2 era) models in PyTorch with Darknet's exact semantics."""

from __future__ import annotations

from pathlib import Path

import torch

from pydarknet.errors import DarknetError
from pydarknet.network import Darknet, build_network

__all__ = ["Darknet", "DarknetError", "load"]
__version__ = "0.1.0"


def load(cfg: str | Path, weights: str | Path | None = None, device: str | torch.device = "cpu",
         upto: int | None = None) -> Darknet:
    """Build the network of a Darknet `.cfg`, fill it from a `.weights` file, put it in eval mode.

    `upto` loads only the first `upto` layers' weights (Darknet's `partial` files)."""
    net = build_network(cfg)
    if weights is not None:
        net.load_weights(weights, upto=upto)
    return net.to(torch.device(device)).eval()
