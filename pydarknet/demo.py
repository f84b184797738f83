"""Darknet's `detector demo` on a video file or a camera: detect on every frame, draw, write a video.

What Darknet's demo (src/demo.c, final commit) does differently from `detector test`, and pydarknet
reproduces: the detection layers' outputs are averaged over the last `avg` frames (default 3) before
decoding, the history starting at zeros; its NMS (`do_nms_obj` at .4 for a [region]). AlexeyAB's demo (for
the [yolo] family) averages nothing and runs the cfg's nms_kind at .45. Darknet shows the
frames in a window and skips the stream's last frames when it ends; pydarknet writes every frame, with
its detections, to a video of the input's size and frame rate.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

from pydarknet.annotate import annotate
from pydarknet.detection import Detection
from pydarknet.detector import Detector
from pydarknet.errors import DarknetError
from pydarknet.fileio import atomic_path
from pydarknet.image import image_from_array

# Output container -> codec that opencv-python(-headless)'s bundled FFmpeg writes.
_FOURCC = {".avi": "MJPG", ".mp4": "mp4v", ".mkv": "MJPG", ".mov": "mp4v"}
_DEFAULT_FPS = 25.0  # cameras often report 0; Darknet's writer assumes 25 then too


@contextlib.contextmanager
def _opencv_quiet() -> Iterator[None]:
    """Mute OpenCV's own warnings while opening: a failure is reported once, as a DarknetError."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def open_video(source: str | int) -> cv2.VideoCapture:
    """A capture of a video file, or of camera N for an integer (or a digit string naming no file)."""
    camera = isinstance(source, int) or (source.isdigit() and not Path(source).exists())
    if not camera and not Path(source).is_file():
        raise DarknetError(f"cannot read video: {'is a directory' if Path(source).is_dir() else 'no such file'}",
                           source)
    with _opencv_quiet():
        capture = cv2.VideoCapture(int(source) if camera else str(source))
    if not capture.isOpened():
        if camera:
            raise DarknetError(f"cannot open camera {int(source)}")
        raise DarknetError("cannot read video: not a video OpenCV can decode", source)
    return capture


class FrameAverager:
    """Darknet's demo smoothing (remember_network + avg_predictions): a ring of the last `n` head
    outputs, zeros at the start, combined as `avg += (float)(1./n) * slot` over the slots in ring order
    (axpy_cpu). So with n = 3 the first frame is decoded from a third of its output, the second from
    two thirds; n = 1 gives each frame's own output."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise DarknetError(f"-avg {n}: expected at least 1 frame")
        self.n = n
        self.slots: list[Tensor | None] = [None] * n
        self.index = 0

    def __call__(self, out: Tensor) -> Tensor:
        self.slots[self.index] = out
        self.index = (self.index + 1) % self.n
        alpha = torch.tensor(np.float32(1.0 / self.n), device=out.device)
        avg = torch.zeros_like(out)
        for slot in self.slots:
            if slot is not None:  # an empty slot adds alpha * 0
                avg += alpha * slot  # product rounded to float, then added: no fused multiply-add
        return avg


class VideoDetector:
    """Per frame: letterbox or resize (the heads' demo geometry; `letterbox=` overrides), forward, average the
    head outputs with the previous frames' (pjreddie's [region]; AlexeyAB's [yolo] averages none), decode,
    NMS (the demo's: do_nms_obj for pjreddie's [region], the cfg's nms_kind for [yolo])."""

    def __init__(self, net: torch.nn.Module, thresh: float = 0.5, hier_thresh: float = 0.5, nms: float = 0.4,
                 avg: int = 3, letterbox: bool | None = None) -> None:
        self.detector = Detector(net, thresh=thresh, hier_thresh=hier_thresh, nms=nms, command="demo",
                                 letterbox=letterbox)
        self.averages = [FrameAverager(head.demo_frames(avg)) for head in self.detector.heads]

    @torch.no_grad()
    def __call__(self, frame_bgr: np.ndarray) -> list[Detection]:
        image = image_from_array(np.ascontiguousarray(frame_bgr[:, :, ::-1]))  # Darknet's rgbgr_image
        (outputs,) = self.detector.forward(self.detector.network_input(image)[None])
        averaged = [average(out) for average, out in zip(self.averages, outputs)]
        return self.detector.decode(averaged, self.detector.frame(image)).detections()


@dataclass
class Frame:
    """What run_demo reports after each frame."""

    index: int  # 0-based
    total: int | None  # frames in the video when the container says, else None (cameras)
    detections: list[Detection]
    seconds: float  # since the previous report (Darknet's FPS is 1 / this): read, detect, draw, write


@dataclass
class DemoResult:
    frames: int
    seconds: float  # the whole loop, without loading the network
    width: int
    height: int
    fps: float  # the output video's frame rate (the input's)

    @property
    def average_fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def _writer(path: Path, fps: float, width: int, height: int) -> cv2.VideoWriter:
    fourcc = _FOURCC.get(path.suffix.lower())
    if fourcc is None:
        raise DarknetError(f"cannot write video: unknown extension, expected one of {', '.join(_FOURCC)}", path)
    with _opencv_quiet():
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise DarknetError("cannot write video", path)
    return writer


def run_demo(net: torch.nn.Module, source: str | int, out: str | Path, names: Sequence[str], *,
             thresh: float = 0.5, hier_thresh: float = 0.5, nms: float = 0.4, avg: int = 3,
             on_frame: Callable[[Frame], None] | None = None, letterbox: bool | None = None) -> DemoResult:
    """Detect on every frame of `source` (a video file or camera index), write the annotated frames to
    `out` (.avi MJPG, .mp4 mp4v, ...) at the input's size and frame rate. The video appears at `out` only
    once complete. Ctrl-C ends the stream like Darknet's ESC key: the frames so far are kept."""
    out = Path(out)
    detector = VideoDetector(net, thresh, hier_thresh, nms, avg, letterbox)
    capture = open_video(source)
    num_classes = detector.detector.num_classes
    try:
        ok, frame = capture.read()
        if not ok:
            raise DarknetError("cannot read video: no frames", source)
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        total = count if count > 0 else None
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps > 0 and np.isfinite(fps) else _DEFAULT_FPS
        height, width = frame.shape[:2]
        with atomic_path(out) as tmp:
            writer = _writer(tmp, fps, width, height)
            frames = 0
            start = last = time.perf_counter()
            try:
                with contextlib.suppress(KeyboardInterrupt):
                    while ok:
                        dets = detector(frame)
                        writer.write(annotate(frame, dets, names, num_classes))
                        frames += 1
                        if on_frame is not None:
                            now = time.perf_counter()
                            on_frame(Frame(frames - 1, total, dets, now - last))
                            last = now
                        ok, frame = capture.read()
                seconds = time.perf_counter() - start
            finally:
                writer.release()
    finally:
        capture.release()
    return DemoResult(frames, seconds, width, height, fps)
