"""pydarknet: original Darknet models in PyTorch with Darknet's exact semantics."""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

from pydarknet import zoo
from pydarknet.detection import Detection
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError
from pydarknet.layers.batchnorm import darknet_reduction_order
from pydarknet.malloc import keep_freed_memory
from pydarknet.network import Darknet, build_network
from pydarknet.train.trainer import Trainer

__all__ = ["Darknet", "DarknetError", "Detection", "Detector", "Trainer", "build_network",
           "darknet_reduction_order", "keep_freed_memory", "load"]
__version__ = "0.1.0"


def load(cfg: str | Path, weights: str | Path | None = None, *, device: str | torch.device = "cpu",
         exact: bool = False, upto: int | None = None) -> Darknet:
    """Build the network of a Darknet `.cfg`, fill it from a `.weights` file, put it in eval mode.

    `cfg` may be a model name (`"yolo9000"`, `"shapes"`: `pydarknet models` lists them): its bundled cfg,
    and without `weights` its official weights, fetched once into the cache (see `pydarknet.zoo`).

    By default the network is built for inference (`pydarknet.fast`): outputs within float rounding of
    Darknet's arithmetic, faster, at any input size; it cannot be trained or saved. `exact=True` gives the
    trainable network with Darknet's arithmetic (training, `save_weights`, bit parity). `upto` loads only
    the first `upto` layers' weights (Darknet's `partial` files)."""
    cfg, weights = zoo.resolve(cfg, weights)
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
