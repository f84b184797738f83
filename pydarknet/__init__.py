"""pydarknet: original Darknet models in PyTorch with Darknet's exact semantics."""

from __future__ import annotations

from pathlib import Path

import torch

from pydarknet import zoo
from pydarknet.detection import Detection
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError
from pydarknet.layers.batchnorm import darknet_reduction_order
from pydarknet.network import Darknet, build_network
from pydarknet.train.trainer import Trainer

__all__ = ["Darknet", "DarknetError", "Detection", "Detector", "Trainer", "build_network",
           "darknet_reduction_order", "load"]
__version__ = "0.1.0"


def load(cfg: str | Path, weights: str | Path | None = None, device: str | torch.device = "cpu",
         upto: int | None = None, fast: bool = False) -> Darknet:
    """Build the network of a Darknet `.cfg`, fill it from a `.weights` file, put it in eval mode.

    `cfg` may be a model name (`"yolo9000"`, `"shapes"`: `pydarknet models` lists them): its bundled cfg,
    and without `weights` its official weights, fetched once into the cache (see `pydarknet.zoo`).

    `upto` loads only the first `upto` layers' weights (Darknet's `partial` files). `fast` rebuilds it
    for inference only (outputs within float rounding; no training or saving): see `pydarknet.fast`."""
    cfg, weights = zoo.resolve(cfg, weights)
    if fast:
        from pydarknet.fast import load_for_inference

        return load_for_inference(cfg, weights, device, upto)
    net = build_network(cfg)
    if weights is not None:
        net.load_weights(weights, upto=upto)
    return net.to(torch.device(device)).eval()
