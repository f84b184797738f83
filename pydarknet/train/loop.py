"""Darknet's training loops on a DataLoader (`detector train` here, `classifier train` in train.classifier):
global random batches, DDP, checkpoints written atomically, resume at the weights' `seen`, progress bar."""

from __future__ import annotations

import math
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

import pydarknet
from pydarknet.data.datafile import DataOptions, read_data_file, resolve_path
from pydarknet.data.dataset import DetectionDataset, ImageListDataset, SampleKey, collate
from pydarknet.errors import DarknetError
from pydarknet.network import Darknet
from pydarknet.train.distributed import DistInfo, init_from_env, shutdown
from pydarknet.train.trainer import Trainer


@dataclass
class TrainOptions:
    clear: bool = False
    device: str = "cpu"
    workers: int = 2
    max_batches: int | None = None
    minutes: float | None = None
    amp: bool = False
    darknet_log: bool = False
    label_policy: str = "skip"
    seed: int = 0
    progress: bool = True
    loader: str = "crop"


class GlobalBatchSampler(Sampler[list[SampleKey]]):
    """Darknet draws training images at random with replacement. Every rank draws the same global
    sequence (same seed) and takes its slice of each mini-batch, so N processes see exactly the
    images one process would; the sample serial (which seeds augmentation) is the global position."""

    def __init__(self, dataset: ImageListDataset, batch: int, subdivisions: int, info: DistInfo,
                 seed: int) -> None:
        self.dataset, self.batch, self.subdivisions, self.info = dataset, batch, subdivisions, info
        self.rng = np.random.default_rng(seed)
        self.serial = 0

    def __iter__(self) -> Iterator[list[SampleKey]]:
        local = self.batch // self.info.world_size
        while True:
            keys = []
            w, h = self.dataset.width, self.dataset.height
            for _ in range(self.subdivisions):
                indices = self.rng.integers(len(self.dataset), size=self.batch)
                first = self.info.rank * local
                keys += [SampleKey(int(indices[k]), w, h, self.serial + k) for k in range(first, first + local)]
                self.serial += self.batch
            yield keys


def multiscale_size(rng: np.random.Generator, net_w: int, batch_num: int, max_batches: int) -> int:
    """Darknet picks `(rand()%10 + 10)*32` (320..608 for a 416 net) and 608 in the last 200 batches;
    other net sizes get the same range scaled to their width, in multiples of 32."""
    lo = max(1, round(net_w * 320 / 416 / 32))
    hi = max(lo, round(net_w * 608 / 416 / 32))
    if batch_num + 200 > max_batches:
        return hi * 32
    return int(rng.integers(lo, hi + 1)) * 32


def checkpoint_names(base: str, batch_num: int) -> list[str]:
    """Darknet's schedule: `<cfg>.backup` every 100 updates, `<cfg>_<i>.weights` every 100 below
    1000 and every 10000 after."""
    names = []
    if batch_num % 100 == 0:
        names.append(f"{base}.backup")
    if batch_num % 10000 == 0 or (batch_num < 1000 and batch_num % 100 == 0):
        names.append(f"{base}_{batch_num}.weights")
    return names


def _next_batch(batches: Iterator[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The next batch. torch re-raises a DataLoader worker's DarknetError as `DarknetError(traceback text)`,
    without file or line; the text's last line holds the original one-line error, which is raised again."""
    try:
        return next(batches)
    except DarknetError as err:
        if err.file is not None or "Traceback" not in err.message:
            raise
        original = err.message.rstrip().rpartition("\n")[2].partition("DarknetError: ")[2]
        raise DarknetError(original or err.message) from None


def load_for_training(cfg_file: str | Path, weights: str | Path | None, device: torch.device):  # noqa: ANN201
    """The network to train: like Darknet, a partial file (e.g. darknet19_448.conv.23, written by
    `pydarknet partial`) fills the leading layers it covers and the rest keep their initialisation."""
    upto = None
    if weights is not None:
        from pydarknet.export.convert import weights_info

        info = weights_info(weights, cfg_file)
        if not info["fits"] and info["ends_at_layer"] and 0 < info["floats"] < info["expected_floats"]:
            upto = info["layers_covered"]
            warnings.warn(f"{weights}: a partial weights file: loading its first {upto} layers",
                          stacklevel=2)
    return pydarknet.load(cfg_file, weights, device=device, exact=True, upto=upto)


@dataclass
class Session:
    """What every training command starts from: the .data options, the train list, the checkpoint directory
    and the network loaded for training on this process's device."""

    options: DataOptions
    train_list: Path
    backup: Path
    net: Darknet
    cfg_file: Path
    device: torch.device
    info: DistInfo


def in_process_group(opts: TrainOptions, body: Callable[[torch.device, DistInfo], Path]) -> Path:
    """Run `body(device, info)` inside the process group torchrun describes (a single process otherwise)."""
    from pydarknet.device import get_device

    device = get_device(opts.device)
    info = init_from_env(device)
    try:
        if device.type == "cuda" and info.enabled:
            device = torch.device("cuda", info.local_rank)
        return body(device, info)
    finally:
        shutdown(info)


def open_session(data_file: str | Path, cfg_file: str | Path, weights: str | Path | None, opts: TrainOptions,
                 device: torch.device, info: DistInfo) -> Session:
    options = read_data_file(data_file)
    if "train" not in options:
        raise DarknetError("has no train= list", data_file)
    train_list = resolve_path(options["train"], data_file)
    backup = Path(options.get("backup", "backup"))
    if info.is_main and backup.is_dir():
        for stale in backup.glob(".*.tmp"):  # left behind by a kill during a checkpoint write
            stale.unlink(missing_ok=True)
    torch.manual_seed(opts.seed)  # the same initial weights in every process and every run
    net = load_for_training(cfg_file, weights, device)
    if opts.clear:
        net.seen = 0
    return Session(options, train_list, backup, net, Path(cfg_file), device, info)


LogLine = Callable[[int, int, float, float, float, float], str]


def run_training(session: Session, dataset: ImageListDataset, opts: TrainOptions, *, max_batches: int | None,
                 checkpoints: Callable[[int, int], list[str]], final_name: str, log_line: LogLine,
                 before_batch: Callable[[int, int], None] | None = None) -> Path:
    """Darknet's training loop over `dataset` until `max_batches` updates (None: until --minutes or a kill):
    global random batches on every rank, DDP, the progress bar, NaN stop, checkpoints written atomically
    by rank 0 under the names `checkpoints(batch_num, seen)` gives after each iteration, `final_name` at the
    end. `log_line(batch_num, seen, loss, avg_loss, rate, seconds)` is Darknet's per-iteration line;
    `before_batch(count, batch_num)` runs before each iteration's data is drawn (multi-scale)."""
    net, info, device, backup = session.net, session.info, session.device, session.backup
    cfg = net.config
    sampler = GlobalBatchSampler(dataset, cfg.batch, cfg.subdivisions, info, opts.seed)
    loader = DataLoader(dataset, batch_sampler=sampler, num_workers=opts.workers, collate_fn=collate,
                        persistent_workers=opts.workers > 0, pin_memory=device.type == "cuda",
                        prefetch_factor=2 if opts.workers > 0 else None)
    model = net
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            net, device_ids=[device.index] if device.type == "cuda" else None, broadcast_buffers=False)
    trainer = Trainer(net, model, world_size=info.world_size, amp=opts.amp and device.type == "cuda")
    imgs = cfg.full_batch
    start = time.time()
    avg_loss = -1.0
    count = 0
    initial = trainer.batch_num if max_batches is None else min(trainer.batch_num, max_batches)
    bar = tqdm(total=max_batches, initial=initial, unit="batch", disable=not (opts.progress and info.is_main),
               file=sys.stderr, dynamic_ncols=True)
    batches = iter(loader)
    waited = 0.0  # seconds the step waited for the loader: the data pipeline's share of the time
    try:
        while max_batches is None or trainer.batch_num < max_batches:
            if opts.minutes is not None and time.time() - start > opts.minutes * 60:
                break
            if before_batch is not None:
                before_batch(count, trainer.batch_num)
            count += 1
            t0 = time.time()
            images, truth = _next_batch(batches)
            waited += time.time() - t0
            try:
                loss = trainer.step(images, truth)
            except FloatingPointError as err:
                raise DarknetError(f"training stopped: {err}; the last checkpoint in {backup} is intact",
                                   session.cfg_file) from None
            avg_loss = loss if avg_loss < 0 else avg_loss * 0.9 + loss * 0.1
            i = trainer.batch_num
            if info.is_main:
                rate = trainer.last_lr
                if opts.darknet_log:
                    tqdm.write(log_line(i, net.seen, loss, avg_loss, rate, time.time() - t0), file=sys.stdout)
                bar.update(i - bar.n)
                bar.set_postfix(loss=f"{loss:.3f}", avg=f"{avg_loss:.3f}", lr=f"{rate:.2g}",
                                img_s=f"{imgs / max(time.time() - t0, 1e-9):.1f}",
                                data=f"{waited / max(time.time() - start, 1e-9):.0%}", refresh=False)
                for name in checkpoints(i, net.seen):
                    net.save_weights(backup / name)
    finally:
        bar.close()
    elapsed = time.time() - start
    if info.is_main and (dataset.label_problems or dataset.skipped_images):
        warnings.warn(f"skipped {dataset.label_problems} bad label lines or missing label files and "
                      f"{dataset.skipped_images} unusable samples (--label-policy stop stops at the first)",
                      stacklevel=2)
    final = backup / final_name
    if info.is_main:
        net.save_weights(final)
        if not math.isfinite(avg_loss):
            raise DarknetError("training ended with a non-finite loss", session.cfg_file)
    if info.is_main and count:
        print(f"{count} iterations, {count * imgs} images in {elapsed:.1f} s: {count * imgs / elapsed:.1f} "
              f"images/s, waiting on data {waited / elapsed:.1%} of the time", file=sys.stderr)
    return final


def train_detector(data_file: str | Path, cfg_file: str | Path, weights: str | Path | None = None,
                   opts: TrainOptions | None = None) -> Path:
    """Train as `darknet detector train`; returns the final weights path."""
    opts = opts or TrainOptions()
    return in_process_group(opts, lambda device, info: _train_detector(
        open_session(data_file, cfg_file, weights, opts, device, info), data_file, opts))


def _detection_dataset(session: Session, data_file: str | Path, opts: TrainOptions) -> DetectionDataset:
    """The detection set; for a WordTree region (YOLO9000) with combine9k's classification-only labels."""
    region, cfg = session.net.region, session.net.config
    p = region.params
    common = dict(jitter=p.jitter, hue=cfg.hue, saturation=cfg.saturation, exposure=cfg.exposure,
                  max_boxes=p.max_boxes, label_policy=opts.label_policy, seed=opts.seed, loader=opts.loader)
    if region.tree is None:
        return DetectionDataset(session.train_list, cfg.width, cfg.height, classes=p.classes, **common)
    from pydarknet.data.combine9k import Combine9kDataset

    labels = session.options.get("labels")
    box_classes = len(region.class_map) if region.class_map is not None else p.classes
    return Combine9kDataset(session.train_list, cfg.width, cfg.height, tree_classes=p.classes,
                            labels=resolve_path(labels, data_file) if labels else None, classes=box_classes,
                            **common)


def _train_detector(session: Session, data_file: str | Path, opts: TrainOptions) -> Path:
    net = session.net
    region = net.region
    if region is None:
        raise DarknetError("detector train needs a [region] layer", session.cfg_file)
    cfg = net.config
    max_batches = opts.max_batches if opts.max_batches is not None else cfg.max_batches
    dataset = _detection_dataset(session, data_file, opts)
    base = session.cfg_file.stem
    size_rng = np.random.default_rng(opts.seed + 1)  # identical on every rank: same sizes everywhere

    def multiscale(count: int, batch_num: int) -> None:
        if region.params.random and count % 10 == 0:
            size = multiscale_size(size_rng, cfg.width, batch_num, max_batches)
            dataset.set_size(size, size)

    def log_line(i: int, seen: int, loss: float, avg: float, rate: float, seconds: float) -> str:
        return f"{i}: {loss:f}, {avg:f} avg, {rate:f} rate, {seconds:f} seconds, {i * cfg.full_batch} images"

    return run_training(session, dataset, opts, max_batches=max_batches,
                        checkpoints=lambda i, seen: checkpoint_names(base, i), final_name=f"{base}_final.weights",
                        log_line=log_line, before_batch=multiscale)
