"""`classifier train` (Darknet's train_classifier) and `classifier valid` (validate_classifier_single).

Labels come from the image paths: `labels=` of the .data file, the first `classes=` lines; an image's truth
is 1 for every label that occurs in its path (ClassificationDataset). The loop, checkpoints written
atomically, resume, progress bar and DDP are those of `detector train` (train.loop).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

import pydarknet
from pydarknet.classify import top_k
from pydarknet.data.augment import crop_image
from pydarknet.data.datafile import DataOptions, read_data_file, read_list, resolve_path
from pydarknet.data.dataset import ClassificationDataset, resize_min
from pydarknet.device import get_device
from pydarknet.errors import DarknetError
from pydarknet.image import load_image
from pydarknet.names import read_names
from pydarknet.network import Darknet
from pydarknet.train.loop import Session, TrainOptions, in_process_group, open_session, run_training

BACKUP_EVERY = 1000  # updates between `<cfg>.backup` writes (final commit; the older loop wrote every 100)


def _int_option(options: DataOptions, key: str, default: int) -> int:
    try:
        return int(options.get(key, default))
    except ValueError:
        raise DarknetError(f"{key}={options[key]} is not an integer", options.path, options.lines.get(key)) from None


def _labels(options: DataOptions, classes: int) -> list[str]:
    """The first `classes` lines of `labels=` (Darknet's default data/labels.list)."""
    name = options.get("labels", "data/labels.list")
    return read_names(name, classes, relative_to=options.path)[:classes]


def _check_classifier(net: Darknet, classes: int, options: DataOptions) -> None:
    if net.kinds[net.output_index] != "softmax":
        raise DarknetError("classifier training needs a [softmax] output layer", net.cfg_path)
    if net.layers[net.output_index].tree is not None:
        raise DarknetError("a WordTree [softmax] (tree=) is not supported by classifier train", net.cfg_path)
    outputs = net.shapes[net.output_index].size
    if outputs != classes:
        raise DarknetError(f"classes={classes} but the network outputs {outputs} values", options.path,
                           options.lines.get("classes"))


class EpochCheckpoints:
    """train_classifier's schedule: `<cfg>_<epoch>.weights` each time seen/N reaches a new epoch (N = images
    listed) and `<cfg>.backup` every BACKUP_EVERY updates."""

    def __init__(self, base: str, images: int, seen: int) -> None:
        self.base, self.images, self.epoch = base, images, seen // images

    def __call__(self, batch_num: int, seen: int) -> list[str]:
        names = []
        if seen // self.images > self.epoch:
            self.epoch = seen // self.images
            names.append(f"{self.base}_{self.epoch}.weights")
        if batch_num % BACKUP_EVERY == 0:
            names.append(f"{self.base}.backup")
        return names


def train_classifier(data_file: str | Path, cfg_file: str | Path, weights: str | Path | None = None,
                     opts: TrainOptions | None = None) -> Path:
    """Train as `darknet classifier train`; returns the final weights path (`<backup>/<cfg>.weights`)."""
    opts = opts or TrainOptions()
    return in_process_group(opts, lambda device, info: _train(
        open_session(data_file, cfg_file, weights, opts, device, info), opts))


def _train(session: Session, opts: TrainOptions) -> Path:
    net, options = session.net, session.options
    cfg = net.config
    classes = _int_option(options, "classes", 2)
    _check_classifier(net, classes, options)
    dataset = ClassificationDataset(session.train_list, _labels(options, classes), cfg.width, cfg.height,
                                    augment=True, min_crop=cfg.min_crop, max_crop=cfg.max_crop, hue=cfg.hue,
                                    saturation=cfg.saturation, exposure=cfg.exposure,
                                    label_policy=opts.label_policy, seed=opts.seed)
    # Darknet's classifier loop runs forever with max_batches=0.
    max_batches = opts.max_batches if opts.max_batches is not None else cfg.max_batches or None
    images = len(dataset)
    base = session.cfg_file.stem

    def log_line(i: int, seen: int, loss: float, avg: float, rate: float, seconds: float) -> str:
        return (f"{i}, {seen / images:.3f}: {loss:f}, {avg:f} avg, {rate:f} rate, {seconds:f} seconds, "
                f"{seen} images")

    return run_training(session, dataset, opts, max_batches=max_batches,
                        checkpoints=EpochCheckpoints(base, images, net.seen), final_name=f"{base}.weights",
                        log_line=log_line)


def center_crop(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """validate_classifier_single's input: shorter side to the network width, then the centre crop."""
    resized = resize_min(image, width)
    _, h, w = resized.shape
    return crop_image(resized, int((w - width) / 2), int((h - height) / 2), width, height)  # C's truncation


@torch.no_grad()
def validate_classifier(data_file: str | Path, cfg_file: str | Path, weights: str | Path | None,
                        device: str = "cpu", top: int | None = None,
                        log: Callable[[str], None] | None = None, exact: bool = False) -> tuple[float, float]:
    """Darknet's `classifier valid`: top-1 and top-k accuracy over `valid=`, one image at a time; an image's
    class is the first label in its path (-1: none, never correct). `log` gets Darknet's running line."""
    options = read_data_file(data_file)
    classes = _int_option(options, "classes", 2)
    topk = top if top is not None else _int_option(options, "top", 1)
    labels = _labels(options, classes)
    valid = resolve_path(options.get("valid", "data/train.list"), data_file)
    paths = read_list(valid)
    if not paths:
        raise DarknetError("no images listed", valid)
    net = pydarknet.load(cfg_file, weights, device=get_device(device), exact=exact)
    if net.kinds[net.output_index] != "softmax":
        raise DarknetError("classifier valid needs a [softmax] output layer", cfg_file)
    tree = net.layers[net.output_index].tree
    dev = next(net.parameters()).device
    hits = hits_k = 0
    for i, path in enumerate(paths):
        cls = next((j for j, name in enumerate(labels) if name in path), -1)
        x = center_crop(load_image(resolve_path(path, valid)), net.config.width, net.config.height)
        pred = net(torch.from_numpy(x)[None].to(dev)).flatten().float().cpu()
        if tree is not None:  # hierarchy_predictions(..., only_leaves=1)
            from pydarknet.wordtree import hierarchy_predictions

            pred = hierarchy_predictions(pred, tree) * torch.from_numpy(tree.leaf.astype(np.float32))
        best = top_k(pred.numpy()[:classes], topk)
        hits += best[0] == cls
        hits_k += cls in best
        if log is not None:
            log(f"{i}: top 1: {hits / (i + 1):f}, top {topk}: {hits_k / (i + 1):f}")
    return hits / len(paths), hits_k / len(paths)
