"""The detector pipeline, one for every command: image(s) -> network input -> forward -> heads -> NMS ->
detections, as Darknet's `detector test` (and `valid`, `recall`, `demo`: `command`) does it.

`detect`, `detector test/valid/recall/map/demo`, `--json` and `Darknet.detect` all run through
`Detector`; batching, the device and what happens to an image that cannot be read are decided here.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from pydarknet.detection import Candidates, Detection
from pydarknet.errors import DarknetError
from pydarknet.heads import Frame, Head, validate_command
from pydarknet.image import image_from_array, letterbox_image, load_image, resize_image

ImageLike = str | Path | np.ndarray


def as_image(image: ImageLike) -> np.ndarray:
    """A path (decoded like Darknet) or an array (HWC uint8 RGB or CHW float) -> CHW float32."""
    if isinstance(image, (str, Path)):
        return load_image(image)
    return image_from_array(np.asarray(image))


@dataclass
class Result:
    """One image through the pipeline."""

    source: ImageLike  # what was given: a path or an array
    image: np.ndarray | None  # CHW float32 as decoded; None if it could not be read
    candidates: Candidates | None  # after NMS, in Darknet's final array order
    seconds: float = 0.0  # network input, forward and decode (the image's share of its batch)
    error: DarknetError | None = None
    detections: list[Detection] = field(init=False)

    def __post_init__(self) -> None:
        self.detections = self.candidates.detections() if self.candidates is not None else []

    @property
    def width(self) -> int:
        return self.image.shape[2]

    @property
    def height(self) -> int:
        return self.image.shape[1]


class Detector:
    """Darknet's detection on `net` (a `Darknet` with at least one detection head).

    `command` picks the Darknet command whose semantics to follow ("test", "valid", "recall", "demo"):
    with the heads' Darknet it decides the input geometry (letterbox or plain resize; `letterbox=` overrides)
    and the NMS. `relative=False` gives boxes in image pixels; `class_map` a WordTree's probs of those tree
    classes (validate_detector's map=); `classes` keeps the probs of the first `classes` classes only;
    `nms=0` skips NMS. Batches of `batch_size` images go through the network together (default: 8 on a
    GPU; 1 on the CPU, whose inference network runs a batch image by image anyway, so a batch would only
    keep more activations alive)."""

    def __init__(self, net: torch.nn.Module, *, thresh: float = 0.5, hier_thresh: float = 0.5, nms: float = 0.45,
                 command: str = "test", letterbox: bool | None = None, relative: bool = True,
                 class_map: np.ndarray | None = None, classes: int | None = None,
                 batch_size: int | None = None) -> None:
        self.heads: list[Head] = [head for _, head in net.heads]
        if not self.heads:
            raise DarknetError("the network has no detection layer ([region] or [yolo]) to detect with",
                               net.cfg_path)
        self.net = net
        self.head_indices = [i for i, _ in net.heads]
        # Darknet takes the geometry and the NMS from the last detection layer.
        last = self.heads[-1]
        self.command = validate_command(command)
        self.letterbox = last.letterbox(command) if letterbox is None else letterbox
        self.nms_fn = last.nms(command)
        self.thresh, self.hier_thresh, self.nms = thresh, hier_thresh, nms
        self.relative, self.class_map, self.classes = relative, class_map, classes
        self.batch_size = batch_size or (8 if net.device.type == "cuda" else 1)

    @property
    def num_classes(self) -> int:
        return self.heads[-1].classes

    def network_input(self, image: np.ndarray) -> np.ndarray:
        w, h = self.net.config.width, self.net.config.height
        return letterbox_image(image, w, h) if self.letterbox else resize_image(image, w, h)

    def frame(self, image: np.ndarray) -> Frame:
        return Frame(image.shape[2], image.shape[1], self.net.config.width, self.net.config.height, self.letterbox,
                     self.relative)

    @torch.no_grad()
    def forward(self, inputs: np.ndarray | Tensor) -> list[list[Tensor]]:
        """(N, C, H, W) network inputs -> per image, every head's (C, H, W) float32 output."""
        x = torch.as_tensor(inputs).to(self.net.device)
        outs = self.net(x, outputs=self.head_indices)
        return [[o[k].float() for o in outs] for k in range(x.shape[0])]

    def decode(self, head_outputs: Sequence[Tensor], frame: Frame) -> Candidates:
        """One image's head outputs -> its candidates after NMS, in Darknet's final array order. As in C, wild
        outputs overflow silently (boxes of inf size, NaN IoUs): numpy is kept from warning about it."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            found = Candidates.merge([head.candidates(out, frame, self.thresh, self.hier_thresh, self.class_map)
                                      for head, out in zip(self.heads, head_outputs, strict=True)])
            if self.classes is not None:
                found = found.with_classes_below(self.classes)
            return self.nms_fn(found, self.nms) if self.nms > 0 else found

    def run(self, images: Iterable[ImageLike], errors: str = "raise") -> Iterator[Result]:
        """Each image's result, in order. `errors="report"`: an image that cannot be read gives a result
        with its `error` (and the others go on); "raise" raises it."""
        if errors not in ("raise", "report"):
            raise ValueError(f"errors={errors!r}: expected 'raise' or 'report'")
        pending: list[tuple[ImageLike, np.ndarray, np.ndarray]] = []
        for source, read in self._read_ahead(images):
            if isinstance(read, DarknetError):
                if errors == "raise":
                    raise read
                yield from self._batch(pending)
                pending = []
                yield Result(source, None, None, error=read)
                continue
            pending.append((source, *read))
            if len(pending) == self.batch_size:
                yield from self._batch(pending)
                pending = []
        yield from self._batch(pending)

    def _read(self, source: ImageLike) -> tuple[np.ndarray, np.ndarray] | DarknetError:
        try:
            image = as_image(source)
        except DarknetError as err:
            return err
        return image, self.network_input(image)

    def _read_ahead(self, images: Iterable[ImageLike]) -> Iterator[tuple[ImageLike, tuple | DarknetError]]:
        """(source, (image, network input) or the error reading it), in order; the next image is read and
        letterboxed on a worker thread while the caller runs the network on this one (decoding, resizing
        and the forward pass release the GIL: about 20 ms of yolov2-voc's ~220 per image on 2 cores)."""
        with ThreadPoolExecutor(1, thread_name_prefix="pydarknet-read") as pool:
            ahead: deque = deque()
            for source in images:
                ahead.append((source, pool.submit(self._read, source)))
                if len(ahead) > 1:
                    done, future = ahead.popleft()
                    yield done, future.result()
            while ahead:
                done, future = ahead.popleft()
                yield done, future.result()

    def _batch(self, items: list[tuple[ImageLike, np.ndarray, np.ndarray]]) -> Iterator[Result]:
        if not items:
            return
        start = time.perf_counter()
        outputs = self.forward(np.stack([network_input for _, _, network_input in items]))
        found = [self.decode(out, self.frame(image)) for (_, image, _), out in zip(items, outputs)]
        seconds = (time.perf_counter() - start) / len(items)
        for (source, image, _), candidates in zip(items, found):
            yield Result(source, image, candidates, seconds)

    def detect(self, images: Iterable[ImageLike]) -> list[list[Detection]]:
        """Detections per image, in the order `darknet detector test` prints them."""
        return [r.detections for r in self.run(images)]
