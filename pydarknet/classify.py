"""Classifier inference as Darknet's `classifier predict`: letterbox, softmax output, top-k."""

from __future__ import annotations

import numpy as np
import torch

from pydarknet.image import letterbox_image
from pydarknet.network import Darknet


def top_k(values: np.ndarray, k: int) -> list[int]:
    """Darknet's top_k: the k largest, ties keep the lower index first."""
    order = np.argsort(-values, kind="stable")
    return [int(i) for i in order[:k]]


@torch.no_grad()
def classify(net: Darknet, image: np.ndarray, top: int = 5) -> list[tuple[int, float]]:
    """(class index, probability) of the `top` most likely classes for a CHW float image."""
    x = torch.from_numpy(letterbox_image(image, net.config.width, net.config.height))[None]
    device = next(net.parameters()).device
    probs = net(x.to(device)).flatten().float().cpu().numpy()
    return [(i, float(probs[i])) for i in top_k(probs, top)]


def classifier_lines(predictions: list[tuple[int, float]], names: list[str]) -> list[str]:
    # Darknet: printf("%5.2f%%: %s\n", predictions[index]*100, names[index]) with float*int in float.
    return [f"{float(np.float32(p) * np.float32(100)):5.2f}%: {names[i]}" for i, p in predictions]
