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
from pydarknet.netconfig import NetConfig
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
    calc_map: bool = False  # AlexeyAB's -map: mAP on the valid list during training
    map_thresh: float = 0.25  # its -thresh
    map_iou: float = 0.5  # its -iou_thresh
    map_epochs: int = 4  # its -mAP_epochs


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


def alexeyab_multiscale_size(rng: np.random.Generator, init_w: int, init_h: int, random: float, resize_step: float,
                             first: bool, batch_num: int, max_batches: int) -> tuple[int, int]:
    """AlexeyAB's `random=` resize (train_detector, every 10 iterations): the network size times a factor in
    [1/coef, coef] (coef 1.4 for random=1, else random), as `roundl(f*size/step + 1)*step`; a shrinking
    factor never gives more than the cfg's size; the largest size for the first resize and the last 100
    iterations; at least one step."""
    coef = 1.4 if random == 1.0 else random
    scale = float(np.float32(rng.uniform(*sorted((1.0, coef)))))
    factor = scale if rng.integers(2) else float(np.float32(1.0 / scale))

    def size(f: float, init: int) -> int:
        # roundl: halves away from zero (the value is positive)
        return int(math.floor(float(np.float32(np.float32(f) * np.float32(init) / np.float32(resize_step)
                                                 + np.float32(1))) + 0.5) * resize_step)

    w, h = size(factor, init_w), size(factor, init_h)
    if factor < 1 and (w > init_w or h > init_h):
        w, h = init_w, init_h
    if first or batch_num > max_batches - 100:
        w, h = size(coef, init_w), size(coef, init_h)
    step = int(resize_step)
    return max(w, step), max(h, step)


EMA_SUFFIX = "_ema.weights"
# AlexeyAB [net] options whose training behaviour pydarknet does not reproduce (tracking, contrastive and
# adversarial training, bad-label rejection, ...): a cfg that sets them gets a warning.
NOT_TRAINED = ("track", "contrastive", "unsupervised", "adversarial_lr", "dynamic_minibatch", "weights_reject_freq",
               "badlabels_rejection_percentage", "num_sigmas_reject_badlabels", "equidistant_point",
               "try_fix_nan", "attention", "adam")


def alexeyab_save_every(max_batches: int, options: DataOptions) -> tuple[int, int]:
    """(saveweights, savelast) of the .data file, AlexeyAB's defaults: `<cfg>_<i>.weights` every 1000
    iterations (10000 from max_batches=10000 on), `<cfg>_last.weights` every 100."""
    every = []
    for key, default in (("saveweights", 1000 if max_batches < 10000 else 10000), ("savelast", 100)):
        try:
            value = int(options.get(key, default))
        except ValueError:
            value = 0
        if value <= 0:
            raise DarknetError(f"{key}={options[key]} must be a positive integer", options.path,
                               options.lines.get(key))
        every.append(value)
    return every[0], every[1]


def checkpoint_names(base: str, batch_num: int, dialect: str = "pjreddie", every: int = 1000,
                     last_every: int = 100, ema: bool = False) -> list[str]:
    """The weights files Darknet writes after update `batch_num`.

    pjreddie: `<cfg>.backup` every 100 updates, `<cfg>_<i>.weights` every 100 below 1000 and every 10000
    after. AlexeyAB: `<cfg>_<i>.weights` every `every`, and `<cfg>_last.weights` (with ema_alpha also
    `<cfg>_ema.weights`, the averaged weights) every `last_every` if that is more often; its counters
    start at the resumed iteration, which gives the same iterations as these multiples."""
    if dialect == "alexeyab":
        names = [f"{base}_{batch_num}.weights"] if batch_num % every == 0 else []
        if every > last_every and batch_num % last_every == 0:
            names.append(f"{base}_last.weights")
            if ema:
                names.append(f"{base}{EMA_SUFFIX}")
        return names
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
        from pydarknet.weights import weights_info

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


LogLine = Callable[[int, int, float, float, float, float, dict], str]


def run_training(session: Session, dataset: ImageListDataset, opts: TrainOptions, *, max_batches: int | None,
                 checkpoints: Callable[[int, int], list[str]], final_name: str, log_line: LogLine,
                 before_batch: Callable[[int, int], None] | None = None,
                 after_batch: Callable[[int, float], None] | None = None) -> Path:
    """Darknet's training loop over `dataset` until `max_batches` updates (None: until --minutes or a kill):
    global random batches on every rank, DDP, the progress bar, NaN stop, checkpoints written atomically
    by rank 0 under the names `checkpoints(batch_num, seen)` gives after each iteration (a `*_ema.weights`
    holds the EMA of the weights, once there is one), `final_name` at the end.
    `log_line(batch_num, seen, loss, avg_loss, rate, seconds, stats)` is Darknet's per-iteration text (`stats`:
    the trainer's last_stats, each head's values of the lines Darknet prints for it);
    `before_batch(count, batch_num)` runs before each iteration's data is drawn (multi-scale),
    `after_batch(batch_num, avg_loss)` after each iteration on rank 0 (the chart)."""
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
                    tqdm.write(log_line(i, net.seen, loss, avg_loss, rate, time.time() - t0, trainer.last_stats),
                               file=sys.stdout)
                bar.update(i - bar.n)
                bar.set_postfix(loss=f"{loss:.3f}", avg=f"{avg_loss:.3f}", lr=f"{rate:.2g}",
                                img_s=f"{imgs / max(time.time() - t0, 1e-9):.1f}",
                                data=f"{waited / max(time.time() - start, 1e-9):.0%}", refresh=False)
                for name in checkpoints(i, net.seen):
                    _save_checkpoint(trainer, backup / name)
                if after_batch is not None:
                    after_batch(i, avg_loss)
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


def _save_checkpoint(trainer: Trainer, path: Path) -> None:
    """Write the network's weights; an EMA file only once the EMA exists (is_ema_initialized)."""
    if not path.name.endswith(EMA_SUFFIX):
        trainer.net.save_weights(path)
        return
    if trainer.alexeyab is not None and trainer.alexeyab.ema is not None:
        with trainer.alexeyab.ema_swapped():
            trainer.net.save_weights(path)


def train_detector(data_file: str | Path, cfg_file: str | Path, weights: str | Path | None = None,
                   opts: TrainOptions | None = None) -> Path:
    """Train as `darknet detector train`; returns the final weights path."""
    opts = opts or TrainOptions()
    return in_process_group(opts, lambda device, info: _train_detector(
        open_session(data_file, cfg_file, weights, opts, device, info), data_file, opts))


def _detection_dataset(session: Session, data_file: str | Path, opts: TrainOptions) -> DetectionDataset:
    """The detection set; for a WordTree region (YOLO9000) with combine9k's classification-only labels."""
    region, cfg = session.net.heads[-1][1], session.net.config
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


def _train_alexeyab_detector(session: Session, opts: TrainOptions) -> Path:
    """AlexeyAB's train_detector: its data pipeline, `random=` resizing, checkpoint names, chart and line."""
    from pydarknet.data.alexeyab_dataset import AlexeyABDetectionDataset, head_train_options
    from pydarknet.heads.yolo_loss import bbox_line, report_line
    from pydarknet.train.chart import TrainChart

    net, cfg = session.net, session.net.config
    head = head_train_options(net.sections)
    ignored = [key for key in NOT_TRAINED if getattr(cfg, key) != getattr(NetConfig(1, 1, 1, 1, 1), key)]
    if ignored and session.info.is_main:
        warnings.warn(f"{session.cfg_file}: {', '.join(ignored)} set in [net]: not implemented by pydarknet's "
                      f"training, ignored", stacklevel=2)
    max_batches = opts.max_batches if opts.max_batches is not None else cfg.max_batches
    dataset = AlexeyABDetectionDataset.from_config(session.train_list, cfg, head, session.cfg_file,
                                                   opts.label_policy, opts.seed)
    base = session.cfg_file.stem
    every, last_every = alexeyab_save_every(cfg.max_batches, session.options)
    size_rng = np.random.default_rng(opts.seed + 1)  # identical on every rank: same sizes everywhere

    def multiscale(count: int, batch_num: int) -> None:
        if head.random and count % 10 == 0:
            dataset.set_size(*alexeyab_multiscale_size(size_rng, cfg.width, cfg.height, head.random,
                                                       cfg.resize_step, count == 0, batch_num, max_batches))

    chart = TrainChart(max_batches, cfg.max_chart_loss)
    # train_detector's avg_time: a slow moving average of the hours left at the last iteration's pace
    clock = {"last": time.time(), "hours": -1.0}
    mapper = None
    if opts.calc_map:
        from pydarknet.train.training_map import TrainingMap

        mapper = TrainingMap.start(session.options, net, train_images=len(dataset), base=base, backup=session.backup,
                                   conf_thresh=opts.map_thresh, iou_thresh=opts.map_iou, epochs=opts.map_epochs,
                                   max_batches=max_batches)

    bbox = {"total": 0, "rewritten": 0}  # Darknet's counters run over the whole training

    def log_line(i: int, seen: int, loss: float, avg: float, rate: float, seconds: float, stats: dict) -> str:
        """The last subdivision's [yolo] lines (Darknet prints them at every one), then train_detector's."""
        lines = [report_line(k, net.layers[k].params, s) for k, s in stats.items() if "tot_iou" in s]
        bbox["total"] += sum(s["total_bbox"] for s in stats.values() if "tot_iou" in s)
        bbox["rewritten"] += sum(s["rewritten_bbox"] for s in stats.values() if "tot_iou" in s)
        if bbox["total"]:
            lines.append(bbox_line(bbox["total"], bbox["rewritten"]))
        return "\n".join(lines + [(mapper.header() + "\n" if mapper else "")
                + f" {i}: {loss:f}, {avg:f} avg loss, {rate:f} rate, {seconds:f} seconds, {i * cfg.full_batch} "
                f"images, {max(clock['hours'], 0.0):f} hours left"])

    def draw(i: int, avg_loss: float) -> None:
        now = time.time()
        left = (max_batches - i) * (now - clock["last"]) / 3600
        clock["last"] = now
        clock["hours"] = left if clock["hours"] < 0 else 0.01 * left + 0.99 * clock["hours"]
        mean_ap = mapper.after(i, net, lambda text: tqdm.write(text, file=sys.stdout)) if mapper else None
        chart.add(i, avg_loss, map_value=mean_ap, hours_left=clock["hours"])
        if chart.due(i):
            chart.save(session.backup / f"chart_{base}.png")

    return run_training(session, dataset, opts, max_batches=max_batches,
                        checkpoints=lambda i, seen: checkpoint_names(base, i, "alexeyab", every, last_every,
                                                                     ema=bool(cfg.ema_alpha)),
                        final_name=f"{base}_final.weights", log_line=log_line, before_batch=multiscale,
                        after_batch=draw)


def _train_detector(session: Session, data_file: str | Path, opts: TrainOptions) -> Path:
    net = session.net
    if not net.heads:
        raise DarknetError("detector train needs a detection layer ([region] or [yolo])", session.cfg_file)
    if net.dialect == "alexeyab":
        return _train_alexeyab_detector(session, opts)
    if opts.calc_map and session.info.is_main:
        warnings.warn("-map is AlexeyAB's (the [yolo] family's cfgs): ignored for this YOLOv2-era cfg", stacklevel=2)
    region = net.heads[-1][1]  # Darknet takes jitter, random, max from the last detection layer
    cfg = net.config
    max_batches = opts.max_batches if opts.max_batches is not None else cfg.max_batches
    dataset = _detection_dataset(session, data_file, opts)
    base = session.cfg_file.stem
    size_rng = np.random.default_rng(opts.seed + 1)  # identical on every rank: same sizes everywhere

    def multiscale(count: int, batch_num: int) -> None:
        if region.params.random and count % 10 == 0:
            size = multiscale_size(size_rng, cfg.width, batch_num, max_batches)
            dataset.set_size(size, size)

    def log_line(i: int, seen: int, loss: float, avg: float, rate: float, seconds: float, stats: dict) -> str:
        return f"{i}: {loss:f}, {avg:f} avg, {rate:f} rate, {seconds:f} seconds, {i * cfg.full_batch} images"

    return run_training(session, dataset, opts, max_batches=max_batches,
                        checkpoints=lambda i, seen: checkpoint_names(base, i), final_name=f"{base}_final.weights",
                        log_line=log_line, before_batch=multiscale)
