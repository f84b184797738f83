"""Detection heads: the layers whose output Darknet decodes into boxes ([region] now; [yolo] beside it).

A head is one object that owns its cfg parameters and its semantics: the activation (its forward), the
candidates of one image (decode, thresholds, WordTree), the NMS and the input geometry each Darknet command
uses with it, and its training delta. Callers hand it the network output; a network may have several
heads, whose candidates are merged (in layer order, as Darknet's get_network_boxes fills its array) before
one NMS. `pydarknet.detector.Detector` is the one pipeline that drives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from pydarknet.boxes import Nms
from pydarknet.detection import Candidates

# The Darknet commands whose detection semantics differ: `detector test` (and `detect`, the API), `valid`
# (and `map`), `recall`, `demo`.
COMMANDS = ("test", "valid", "recall", "demo")


@dataclass(frozen=True)
class Frame:
    """How one image became the network input, for putting boxes back onto the image."""

    image_w: int
    image_h: int
    net_w: int
    net_h: int
    letterbox: bool  # letterboxed (aspect kept on a grey canvas), else resized to the network size
    relative: bool = True  # boxes relative to the image, else in its pixels


class HeadDelta(NamedTuple):
    delta: Tensor  # Darknet's delta (target - output) for the head's output (its input with delta_to_input)
    cost: float  # the layer's cost, as Darknet sums it
    stats: dict  # the values of the line Darknet prints for the layer while training


class Head(nn.Module):
    """Base of the detection layers. Subclasses set `classes` and implement the methods below."""

    classes: int
    # True where Darknet's backward adds the delta to the input's delta unchanged ([yolo]: no derivative of its
    # activation): the trainer then backpropagates it from the layer's input instead of its output.
    delta_to_input: bool = False

    def candidates(self, output: Tensor, frame: Frame, thresh: float, hier_thresh: float = 0.5,
                   class_map: np.ndarray | None = None) -> Candidates:
        """One image's (C, H, W) output -> its part of Darknet's detection array: boxes with objectness >
        thresh and their class probs > thresh (`class_map`: a WordTree's probs of these tree classes)."""
        raise NotImplementedError

    def letterbox(self, command: str) -> bool:
        """Whether Darknet letterboxes the image for `command` (else a plain resize)."""
        raise NotImplementedError

    def nms(self, command: str) -> Nms:
        """The NMS Darknet runs after `command`'s decode."""
        raise NotImplementedError

    def demo_frames(self, frames: int) -> int:
        """Over how many frames Darknet's demo averages this head's output when asked for `frames` (-avg)."""
        return frames

    def delta(self, output: Tensor, truth: Tensor, seen: int, net_size: tuple[int, int] | None = None) -> HeadDelta:
        """The training delta of a (N, C, H, W) output for `truth` (N, B, 5) rows x, y, w, h, class relative
        to the network input, whose size (w, h) is `net_size`; `seen` counts images including this batch."""
        raise NotImplementedError

    def decode_dense(self, output: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """(N, C, H, W) output -> every box as (N, B, 4) network-relative xywh, (N, B) objectness and
        (N, B, classes) probs, in torch ops only (for export); thresholds and NMS left to the caller."""
        raise NotImplementedError


def validate_command(command: str) -> str:
    if command not in COMMANDS:
        raise ValueError(f"unknown detection command {command!r} (one of {', '.join(COMMANDS)})")
    return command


def write_rounds(key: Tensor) -> Tensor:
    """For each entry, how many earlier entries share its key. Darknet writes the deltas of its truths one
    after another, so a later truth on the same slot reads what an earlier one wrote: the entries of one
    round have distinct slots and are written together, round after round (keys in Darknet's truth order)."""
    order = torch.sort(key, stable=True).indices
    sorted_key = key[order]
    pos = torch.arange(key.numel(), device=key.device)
    run_start = torch.ones_like(sorted_key, dtype=torch.bool)
    run_start[1:] = sorted_key[1:] != sorted_key[:-1]
    rank = torch.empty_like(pos)
    rank[order] = pos - torch.where(run_start, pos, 0).cummax(0).values
    return rank
