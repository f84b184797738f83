"""The chart AlexeyAB's `detector train` draws (draw_train_chart, draw_train_loss in src/image_opencv.cpp):
average loss as blue dots and mAP% as a red line against the iteration, on a 1000 x 1000 grid, saved as
PNG every 100 iterations and before the last. Drawn with OpenCV, as there and in evaluate.pr_plot.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pydarknet.image import save_image

SIZE = 1000
OFFSET = 60  # left margin of the plot area; its height is SIZE - OFFSET too
LINES = 100
SAVE_EVERY = 100
_FONT = cv2.FONT_HERSHEY_COMPLEX_SMALL
_F32 = np.float32


def _rgb(r: int, g: int, b: int) -> tuple[int, int, int]:
    """CV_RGB: the chart is a BGR image."""
    return b, g, r


def _text(img: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int], thickness: int = 1) -> None:
    cv2.putText(img, text, at, _FONT, 0.7, colour, thickness, cv2.LINE_AA)


class TrainChart:
    """chart.png of one training run: `add()` after every iteration, `save()` when `due()` says so."""

    def __init__(self, max_batches: int, max_loss: float = 20.0) -> None:
        self.max_batches, self.max_loss = max(max_batches, 1), max_loss
        self.draw = SIZE - OFFSET
        self.image = np.full((SIZE, SIZE, 3), 255, np.uint8)
        self._old_batch = 0
        self._old_map = self._max_map = 0.0
        self._map_iteration = self._map_text_iteration = 0
        self._old_contrastive = 0.0
        self._grid()

    def _x(self, iteration: int) -> int:
        return int(OFFSET + _F32(self.draw) * _F32(iteration) / _F32(self.max_batches))

    def _y(self, fraction: float) -> int:
        """The height of `fraction` (0 bottom, 1 top) of the plot area."""
        return int(_F32(self.draw) * (_F32(1) - _F32(fraction)))

    def _grid(self) -> None:
        img, draw = self.image, self.draw
        for i in range(1, LINES + 1):
            y = int(_F32(i) * _F32(draw) / _F32(LINES))
            cv2.line(img, (OFFSET, y), (SIZE, y), _rgb(224, 224, 224), 1, cv2.LINE_8)
            if i % 10 == 0:
                _text(img, f"{self.max_loss * (LINES - i) / LINES:2.1f}", (30, y + 3), _rgb(0, 0, 0))
                cv2.line(img, (OFFSET, y), (SIZE, y), _rgb(128, 128, 128), 1, cv2.LINE_8)
        for i in range(LINES + 1):
            x = int(OFFSET + _F32(i) * _F32(draw) / _F32(LINES))
            cv2.line(img, (x, draw), (x, 0), _rgb(224, 224, 224), 1, cv2.LINE_8)
            if i % 10 == 0:
                _text(img, str(self.max_batches * i // LINES), (x - 20, draw + 15), _rgb(0, 0, 0))
                cv2.line(img, (x, draw), (x, 0), _rgb(128, 128, 128), 1, cv2.LINE_8)
        _text(img, "Loss", (10, 60), _rgb(0, 0, 255))
        _text(img, "Iteration number", (draw // 2, SIZE - 10), _rgb(0, 0, 0))
        _text(img, f"in cfg max_batches={self.max_batches}", (draw - 195, SIZE - 10), _rgb(0, 0, 0))
        _text(img, "Press 's' to save : chart.png", (5, SIZE - 10), _rgb(0, 0, 0))

    def add(self, iteration: int, avg_loss: float, map_value: float | None = None, hours_left: float = 0.0,
            contrastive: float = 0.0) -> None:
        """Plot the average loss at `iteration`; `map_value` (0..1) when mAP was just computed.
        `contrastive` is the contrastive accuracy (0..1): Darknet always passes one, 0 without contrastive."""
        img = self.image
        x = self._x(iteration)
        y = self._y(_F32(avg_loss) / _F32(self.max_loss))
        cv2.circle(img, (x, y if y >= 0 else 1), 1, _rgb(0, 0, 255), cv2.FILLED, cv2.LINE_8)
        if iteration > 0:
            cv2.line(img, (self._x(iteration - 1), self._y(self._old_contrastive)), (x, self._y(contrastive)),
                     _rgb(0, 150, 70), 1, cv2.LINE_8)
        self._old_contrastive = contrastive
        label = f"C:{contrastive * 100:2.1f}% "
        _text(img, label, (1, 45), _rgb(255, 255, 255), 5)
        _text(img, label, (1, 45), _rgb(0, 150, 70))
        if map_value is not None:
            self._add_map(iteration, x, map_value)
        status = f"current avg loss = {avg_loss:2.4f}    iteration = {iteration}    approx. time left = " \
                 f"{hours_left:2.2f} hours"
        cv2.rectangle(img, (15, self.draw + 18), (815, self.draw + 38), _rgb(255, 255, 255), cv2.FILLED, cv2.LINE_8)
        _text(img, status, (15, self.draw + 33), _rgb(0, 0, 100))

    def _add_map(self, iteration: int, x: int, value: float) -> None:
        img = self.image
        if self._map_iteration == 0:
            _text(img, "mAP%", (10, 12), _rgb(255, 0, 0))
        else:
            cv2.line(img, (self._x(self._map_iteration), self._y(self._old_map)), (x, self._y(value)),
                     _rgb(255, 0, 0), 1, cv2.LINE_8)
        label = f"{value * 100:2.1f}% "
        _text(img, label, (10, 28), _rgb(255, 255, 255), 5)
        _text(img, label, (10, 28), _rgb(200, 0, 0))
        if (abs(self._old_map - value) > 0.1 or self._max_map < value
                or iteration - self._map_text_iteration >= self.max_batches // 10):
            self._map_text_iteration = iteration
            self._max_map = max(self._max_map, value)
            at = (x - 30, int(_F32(self.draw) * (_F32(1) - _F32(value)) + _F32(15)))
            _text(img, f"{value * 100:2.0f}% ", at, _rgb(255, 255, 255), 5)
            _text(img, f"{value * 100:2.0f}% ", at, _rgb(200, 0, 0))
        self._old_map, self._map_iteration = value, iteration

    def due(self, iteration: int) -> bool:
        """Darknet saves the chart when the iteration enters a new hundred, and at max_batches - 1."""
        if iteration == self.max_batches - 1 or iteration // SAVE_EVERY > self._old_batch // SAVE_EVERY:
            self._old_batch = iteration
            return True
        return False

    def save(self, path: str | Path) -> None:
        """Write the chart (atomically); later charts show "- Saved" as Darknet's do after a save."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(path, self.image)
        _text(self.image, "- Saved", (260, SIZE - 10), _rgb(255, 0, 0))
