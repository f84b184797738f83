"""When AlexeyAB's `detector train -map` computes the validation mAP, and when it writes `<cfg>_best.weights`
(train_detector): every `-mAP_epochs` epochs of the train list (at least every 100 iterations), not before
burn_in, and at the last iteration; the best file whenever the mAP is at least the best so far."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MapSchedule:
    """The -map state of one training run, from the iteration it starts (or resumes) at."""

    train_images: int
    full_batch: int  # images per iteration (batch*subdivisions)
    burn_in: int
    max_batches: int
    start: int = 0  # iter_map: the iteration of the last mAP (the start at first)
    epochs: int = 4  # -mAP_epochs
    best: float = -1.0

    def next_at(self) -> int:
        """The iteration of the next mAP: `max(iter_map + max(epochs*images/(batch*subdivisions), 100), burn_in)`
        (integer division)."""
        every = max(self.epochs * self.train_images // self.full_batch, 100)
        return max(self.start + every, self.burn_in)

    def due(self, iteration: int) -> bool:
        """Whether to compute the mAP after `iteration`."""
        return iteration >= self.next_at() or iteration == self.max_batches

    def record(self, iteration: int, mean_ap: float, base: str) -> list[str]:
        """Note the mAP computed after `iteration`; the weights files to write: `<base>_best.weights` when it
        is at least the best so far (Darknet's `>=`, so ties refresh the file)."""
        self.start = iteration
        if mean_ap >= self.best:
            self.best = mean_ap
            return [f"{base}_best.weights"]
        return []
