"""`detector train -map`: AlexeyAB's mAP on the valid list during training, at MapSchedule's iterations, with
the report validate_detector_map prints, `mean_average_precision (mAP@0.50) = ...`, `<cfg>_best.weights`
when it is at least the best so far, and the value the chart plots."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pydarknet.data.datafile import DataOptions
from pydarknet.errors import DarknetError
from pydarknet.evaluate.alexeyab_detector_map import map_report
from pydarknet.network import Darknet
from pydarknet.train.map_schedule import MapSchedule


@dataclass
class TrainingMap:
    data_file: Path
    schedule: MapSchedule
    base: str  # the cfg's name: <base>_best.weights
    backup: Path
    conf_thresh: float = 0.25  # -thresh
    iou_thresh: float = 0.5  # -iou_thresh
    last: float = 0.0  # the last mAP computed

    @classmethod
    def start(cls, options: DataOptions, net: Darknet, *, train_images: int, base: str, backup: Path,
              conf_thresh: float, iou_thresh: float, epochs: int, max_batches: int) -> TrainingMap:
        """The -map state of a run starting (or resuming) at the network's iteration."""
        if "valid" not in options:
            raise DarknetError("-map needs a valid= list (the images to compute the mAP on)", options.path)
        cfg = net.config
        schedule = MapSchedule(train_images, cfg.full_batch, cfg.burn_in, max_batches,
                               start=net.seen // cfg.full_batch, epochs=epochs)
        return cls(Path(options.path), schedule, base, backup, conf_thresh, iou_thresh)

    def header(self) -> str:
        """What train_detector prints before each iteration's line."""
        line = f"\n (next mAP calculation at {self.schedule.next_at()} iterations) "
        if self.last > 0:
            line += (f"\n Last accuracy mAP@{self._iou:0.2f} = {self.last * 100:2.2f} %, "
                     f"best = {self.schedule.best * 100:2.2f} % ")
        return line

    @property
    def _iou(self) -> float:
        return float(np.float32(self.iou_thresh))

    def after(self, iteration: int, net: Darknet, log: Callable[[str], None]) -> float | None:
        """After `iteration`: the mAP when it is due (None otherwise); writes `<base>_best.weights`."""
        if not self.schedule.due(iteration):
            return None
        report, names = map_report(net, self.data_file, self.conf_thresh, self.iou_thresh, 0, progress=False)
        self.last = report.mean_ap
        log("\n".join(report.lines(names)))
        log(f"\n mean_average_precision (mAP@{self._iou:0.2f}) = {self.last:f} ")
        for name in self.schedule.record(iteration, self.last, self.base):
            log("New best mAP!")
            net.save_weights(self.backup / name)
        return self.last
