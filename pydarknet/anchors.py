"""Anchor boxes for a [region] or [yolo] layer: k-means with distance 1 - IoU over the training boxes' sizes.

Boxes and anchors are compared centred on each other (only w and h matter), as YOLOv2 chose its anchors.
[region] anchors are in grid cells; [yolo] anchors in pixels of the network input, as AlexeyAB's
`detector calc_anchors` prints them (with its report and its `-show` plot, cloud.png).
Everything is vectorized over the boxes (numpy), and Hamerly's bounds skip the boxes that cannot change
cluster: 1e6 boxes take seconds (benchmarks/anchors.py).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pydarknet.cfg import Section
from pydarknet.data.datafile import read_data_file, read_list, resolve_path
from pydarknet.data.labels import LabelPolicy, label_path, read_labels
from pydarknet.errors import DarknetError
from pydarknet.fileio import atomic_write, read_text


@dataclass
class BoxSizes:
    wh: np.ndarray  # (N, 2) float64 w, h relative to the image
    classes: np.ndarray  # (N,) int class of each box
    images: int
    problems: list[str]  # dropped label lines, missing label files, zero-size boxes


@dataclass
class Clusters:
    anchors: np.ndarray  # (K, 2) relative w, h, sorted by area (ascending, as AlexeyAB's calc_anchors)
    assignment: np.ndarray  # (N,) index of each box's nearest anchor (highest IoU)
    mean_iou: float  # mean over boxes of the IoU with the nearest anchor
    iterations: int


def load_box_sizes(data_file: str | Path, policy: LabelPolicy = "skip", progress: bool = False) -> BoxSizes:
    """w, h of every box of the .data file's train= list, labels found and checked as for training."""
    options = read_data_file(data_file)
    train_list = resolve_path(options.get("train", "data/train.list"), options.path)  # Darknet's default
    classes = None
    if "classes" in options:
        try:
            classes = int(options["classes"])
        except ValueError:
            raise DarknetError(f"classes={options['classes']!r} is not an integer", options.path,
                               options.lines["classes"]) from None
    paths = read_list(train_list)
    sizes, ids, problems = [], [], []
    for path in tqdm(paths, disable=None if progress else True, unit="img", file=sys.stderr):
        try:
            labels = read_labels(resolve_path(label_path(path), train_list), policy, classes)
        except DarknetError as err:
            if policy == "stop":
                raise
            problems.append(str(err))
            continue
        problems += labels.problems
        sizes.append(labels.boxes[:, 3:5])
        ids.append(labels.boxes[:, 0])
    wh = np.concatenate(sizes).astype(np.float64) if sizes else np.zeros((0, 2))
    classes = np.concatenate(ids).astype(np.int64) if ids else np.zeros(0, np.int64)
    empty = ~(wh > 0).all(1)  # a zero-size box has IoU 0 with every anchor: no information, only noise
    if empty.any():
        problems.append(f"{int(empty.sum())} boxes with zero width or height left out")
    return BoxSizes(wh[~empty], classes[~empty], len(paths), problems)


def iou_wh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of centred boxes, `a[..., (w, h)]` broadcast against `b[..., (w, h)]`.
    `iou_wh(boxes[:, None], anchors)` is (N, K)."""
    return _iou(a[..., 0], a[..., 1], a[..., 0] * a[..., 1], b[..., 0], b[..., 1])


def _iou(w: np.ndarray, h: np.ndarray, area: np.ndarray, bw: np.ndarray, bh: np.ndarray) -> np.ndarray:
    """min(w)·min(h) / (area + bw·bh - intersection), broadcasting."""
    inter = np.minimum(w, bw) * np.minimum(h, bh)
    return inter / (area + bw * bh - inter)


def kmeans_pp_init(wh: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding with d = 1 - IoU: each new centre is a box drawn with probability ∝ d² to its
    nearest centre so far."""
    centres = [wh[rng.integers(len(wh))]]
    dist = 1.0 - iou_wh(wh, centres[0])
    for _ in range(1, k):
        weight = np.square(dist)
        total = weight.sum()
        if not total > 0:
            raise DarknetError(f"only {len(centres)} distinct box sizes for {k} clusters")
        centres.append(wh[rng.choice(len(wh), p=weight / total)])
        np.minimum(dist, 1.0 - iou_wh(wh, centres[-1]), out=dist)
    return np.array(centres)


class _Boxes:
    """w, h and area as contiguous columns: the loop gathers subsets of them every iteration."""

    def __init__(self, wh: np.ndarray) -> None:
        self.w, self.h = np.ascontiguousarray(wh[:, 0]), np.ascontiguousarray(wh[:, 1])
        self.area = self.w * self.h

    def nearest_two(self, anchors: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
        """Per box (of `rows`): the anchor of highest IoU (first of ties), its distance 1 - IoU and the
        second smallest distance."""
        w, h, area = (self.w, self.h, self.area) if rows is None else (self.w[rows], self.h[rows], self.area[rows])
        iou = _iou(w[:, None], h[:, None], area[:, None], anchors[:, 0], anchors[:, 1])
        best = iou.argmax(1)[:, None]
        first = np.take_along_axis(iou, best, 1)[:, 0]
        np.put_along_axis(iou, best, -1.0, 1)
        return best[:, 0], 1.0 - first, 1.0 - iou.max(1)

    def distance(self, rows: np.ndarray, anchors: np.ndarray) -> np.ndarray:
        """1 - IoU of box rows[i] and anchors[i]."""
        return 1.0 - _iou(self.w[rows], self.h[rows], self.area[rows], anchors[:, 0], anchors[:, 1])

    def sums(self, assign: np.ndarray, k: int, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Members per cluster and the (K, 2) sums of their w, h (of `rows`, with `assign` for them)."""
        cols = (self.w, self.h) if rows is None else (self.w[rows], self.h[rows])
        return np.bincount(assign, minlength=k), np.stack([np.bincount(assign, c, k) for c in cols], 1)


def kmeans_anchors(wh: np.ndarray, k: int, seed: int = 0, max_iter: int = 1000, tol: float = 1e-9) -> Clusters:
    """k-means (Lloyd) with distance 1 - IoU and k-means++ seeding; a centre is its members' mean w, h.

    1 - IoU of centred boxes is the Jaccard distance of two rectangles, a metric, so Hamerly's bounds
    apply: a box whose upper bound to its centre stays below its lower bound to every other centre
    (or half its centre's distance to the nearest other) keeps its cluster without being measured.
    The assignments are Lloyd's; iterations where few boxes move get cheap.
    Stops when no box changes cluster or no centre moves more than `tol` (in 1 - IoU). An emptied
    cluster restarts at the worst-fitting box (largest distance bound), so K anchors always come back."""
    wh = np.asarray(wh, dtype=np.float64)
    if wh.ndim != 2 or wh.shape[1] != 2 or not (np.isfinite(wh).all() and (wh > 0).all()):
        raise ValueError("box sizes must be an (N, 2) array of positive finite w, h")
    if k < 1:
        raise DarknetError(f"number of clusters must be positive, not {k}")
    if len(wh) < k:
        raise DarknetError(f"{len(wh)} boxes cannot make {k} clusters")
    boxes = _Boxes(wh)
    anchors = kmeans_pp_init(wh, k, np.random.default_rng(seed))
    assign, upper, lower = boxes.nearest_two(anchors)
    counts, sums = boxes.sums(assign, k)
    iterations = 1
    while True:
        means = sums / np.maximum(counts, 1)[:, None]
        empty = np.flatnonzero(counts == 0)
        if empty.size:
            means[empty] = wh[np.argsort(-upper, kind="stable")[: empty.size]]
        drift = 1.0 - iou_wh(anchors, means)
        anchors = means
        if iterations >= max_iter or drift.max() <= tol:
            break
        iterations += 1
        upper += drift.take(assign)
        # Hamerly: the other centres moved at most the largest drift among them.
        top = int(drift.argmax())
        lower -= np.where(assign == top, np.partition(drift, -2)[-2] if k > 1 else 0.0, drift[top])
        between = 1.0 - iou_wh(anchors[:, None], anchors)
        np.fill_diagonal(between, np.inf)
        bound = np.maximum(lower, (0.5 * between.min(1)).take(assign)) - 1e-12  # slack for float rounding
        check = np.flatnonzero(upper > bound)
        upper[check] = boxes.distance(check, anchors[assign[check]])
        check = check[upper[check] > bound[check]]
        new, upper[check], lower[check] = boxes.nearest_two(anchors, check)
        moved = new != assign[check]
        if not moved.any():
            break
        rows = check[moved]
        out_counts, out_sums = boxes.sums(assign[rows], k, rows)
        in_counts, in_sums = boxes.sums(new[moved], k, rows)
        counts += in_counts - out_counts  # only the boxes that moved change the means
        sums += in_sums - out_sums
        assign[rows] = new[moved]
    order = np.argsort(anchors[:, 0] * anchors[:, 1], kind="stable")
    anchors = anchors[order]
    iou = iou_wh(wh[:, None], anchors)
    nearest = iou.argmax(1)
    return Clusters(anchors, nearest, float(iou[np.arange(len(wh)), nearest].mean()), iterations)


def format_anchors(anchors_cells: np.ndarray) -> str:
    """`w,h, w,h, ...` with 4 decimals, as AlexeyAB's calc_anchors prints them."""
    return ", ".join(f"{w:.4f},{h:.4f}" for w, h in anchors_cells)


def region_grid(cfg_path: str | Path) -> tuple[int, int, int, int]:
    """(net width, net height, grid width, grid height) of the cfg's last [region] layer."""
    from pydarknet.network import build_network

    net = build_network(cfg_path)
    regions = [i for i, kind in enumerate(net.kinds) if kind == "region"]
    if not regions:
        raise DarknetError("has no [region] layer to write anchors into", cfg_path)
    shape = net.shapes[regions[-1]]
    return net.config.width, net.config.height, shape.w, shape.h


def write_region_anchors(cfg_path: str | Path, anchors_text: str, k: int) -> None:
    """Set anchors= and num= of the cfg's last [region] in place (atomically); every other byte stays.

    When num changes, the [convolutional] just before the region must change its filters= to
    num*(coords+1+classes) too, or the network would not build; that line is updated as well."""
    from pydarknet.cfg import parse_cfg_text

    path = Path(cfg_path)
    text = _read_cfg_text(path)
    sections = parse_cfg_text(text, str(path))
    regions = [i for i, s in enumerate(sections) if s.kind == "region"]
    if not regions:
        raise DarknetError("has no [region] section to write anchors into", path)
    index = regions[-1]
    region = sections[index]
    lines = text.splitlines(keepends=True)  # the parser's line numbers index this list (1-based)

    def set_option(sec: Section, key: str, value: str) -> None:
        _set_option(lines, sec, key, value)

    old_num = region.get_int("num", 1)
    if k != old_num:
        per_anchor = region.get_int("coords", 4) + 1 + region.get_int("classes", 20)
        conv = sections[index - 1]
        if conv.kind not in ("convolutional", "conv") or conv.get_int("filters", 1) != old_num * per_anchor:
            raise region.error(f"num changes from {old_num} to {k} but the layer before is not a "
                               f"[convolutional] with filters={old_num * per_anchor} to resize")
        set_option(conv, "filters", str(k * per_anchor))
    set_option(region, "anchors", anchors_text)
    set_option(region, "num", str(k))
    atomic_write(path, "".join(lines).encode("utf-8", errors="surrogateescape"))


def _read_cfg_text(path: Path) -> str:
    return read_text(path, "cfg file", errors="surrogateescape")  # every byte written back as it was


def _set_option(lines: list[str], sec: Section, key: str, value: str) -> None:
    """Set `key=value` of `sec` in the cfg's `lines` (keepends; the parser's line numbers index them): the
    value replaced in place, or a new line right after the header (Darknet reads options in any order)."""
    header = lines[sec.line - 1]
    eol = header[len(header.rstrip("\r\n")):] or "\n"
    opt = sec.options.get(key)
    if opt is None:
        lines[sec.line - 1] = header + ("" if header.endswith(("\n", "\r")) else eol) + f"{key}={value}{eol}"
        return
    raw = lines[opt.line - 1]
    body = raw.rstrip("\r\n")
    prefix = re.match(r"[^=]*=[ \t]*", body).group(0)  # keep the key's own spelling and spacing
    lines[opt.line - 1] = prefix + value + raw[len(body):]


YOLO_HEADS = ("yolo", "gaussian_yolo")


def write_yolo_anchors(cfg_path: str | Path, anchors_text: str, k: int) -> int:
    """Set anchors= of every [yolo] section of the cfg in place (atomically); every other byte stays.
    Returns how many sections were written. Each head's num= must already be k: its mask= picks anchors
    by index and the filters= before it follow the mask, so a new count is the user's call."""
    from pydarknet.cfg import parse_cfg_text

    path = Path(cfg_path)
    text = _read_cfg_text(path)
    heads = [s for s in parse_cfg_text(text, str(path)) if s.kind in YOLO_HEADS]
    if not heads:
        raise DarknetError("has no [yolo] section to write anchors into", path)
    for sec in heads:
        num = sec.get_int("num", 1)
        if num != k:
            raise sec.error(f"num={num} but {k} clusters were asked for: mask= and filters= follow num, "
                            f"so use -num_of_clusters {num} or change the cfg first", "num")
    lines = text.splitlines(keepends=True)
    for sec in heads:
        _set_option(lines, sec, "anchors", anchors_text)
    atomic_write(path, "".join(lines).encode("utf-8", errors="surrogateescape"))
    return len(heads)


def format_anchors_pixels(anchors_px: np.ndarray, width: int, padded: bool = True) -> str:
    """AlexeyAB's anchors line: `%3.0f,%3.0f` per anchor (`%2.4f` for a width of 32 or less: anchors in
    cells), joined by ", "; unpadded, the same values as a cfg's anchors=."""
    digits = 0 if width > 32 else 4
    pad = (3 if width > 32 else 2) if padded else 0
    return ", ".join(f"{w:{pad}.{digits}f},{h:{pad}.{digits}f}" for w, h in anchors_px)


def mean_best_iou_percent(wh_px: np.ndarray, anchors_px: np.ndarray) -> float:
    """calc_anchors' `avg IoU`: each box's IoU with its nearest anchor, in float32, summed in order,
    times 100 over the boxes."""
    w, h = wh_px[:, :1].astype(np.float32), wh_px[:, 1:].astype(np.float32)
    aw, ah = anchors_px[:, 0].astype(np.float32), anchors_px[:, 1].astype(np.float32)
    inter = np.minimum(w, aw) * np.minimum(h, ah)
    iou = inter / (w * h + aw * ah - inter)
    best = iou.max(1)
    total = np.cumsum(best, dtype=np.float32)[-1] if len(best) else np.float32(0)
    return float(np.float32(100) * total / np.float32(len(best)))


def alexeyab_report(k: int, width: int, height: int, images: int, boxes: int, iterations: int,
                    counters: list[int], avg_iou: float, anchors_line: str) -> str:
    """What AlexeyAB's calc_anchors prints (its progress line once, at the end)."""
    return (f"\n num_of_clusters = {k}, width = {width}, height = {height} \n"
            f" read labels from {images} images \n"
            f" loaded \t image: {images} \t box: {boxes}"
            "\n all loaded. \n"
            "\n calculating k-means++ ...\n"
            f"\n iterations = {iterations} \n\n"
            f"\ncounters_per_class = {', '.join(map(str, counters))}\n"
            f"\n avg IoU = {avg_iou:2.2f} % \n"
            "\nSaving anchors to the file: anchors.txt \n"
            f"anchors = {anchors_line}\n")


def plot_cloud(wh_px: np.ndarray, assignment: np.ndarray, anchors_px: np.ndarray, width: int, height: int,
               path: str | Path, size: int = 700) -> None:
    """AlexeyAB's `-show` picture (show_acnhors, saved as cloud.png): on black, each box's w, h as a dot
    coloured by cluster, each anchor as a white rectangle from the origin; size pixels = the network size."""
    import cv2


    img = np.zeros((size, size, 3), np.uint8)
    scale_w, scale_h = np.float32(size) / np.float32(width), np.float32(size) / np.float32(height)
    xs = (wh_px[:, 0].astype(np.float32) * np.float32(size) / np.float32(width)).astype(np.int64)
    ys = (wh_px[:, 1].astype(np.float32) * np.float32(size) / np.float32(height)).astype(np.int64)
    for x, y, idx in zip(xs.tolist(), ys.tolist(), assignment.tolist()):
        rgb = ((idx * 123 + 55) % 255, (idx * 321 + 33) % 255, (idx * 11 + 99) % 255)
        cv2.circle(img, (x, y), 1, rgb[::-1], cv2.FILLED, cv2.LINE_8)
    for aw, ah in anchors_px.astype(np.float32):
        cv2.rectangle(img, (0, 0), (int(aw * scale_w), int(ah * scale_h)), (255, 255, 255), 1, cv2.LINE_8)
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise DarknetError("OpenCV could not encode the plot", path)
    atomic_write(path, png.tobytes())


def plot_clusters(wh_cells: np.ndarray, assignment: np.ndarray, anchors_cells: np.ndarray, path: str | Path,
                  size: int = 700, unit: str = "grid cells") -> None:
    """PNG scatter of box w/h (in `unit`) coloured by cluster, each anchor as a cross and the
    rectangle from the origin it stands for (as AlexeyAB's `-show`)."""
    import cv2


    margin = 50
    span = float(max(wh_cells.max(), anchors_cells.max())) * 1.05
    scale = (size - 2 * margin) / span
    img = np.full((size, size, 3), 255, np.uint8)

    def to_px(w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return (margin + w * scale).astype(np.int64), (size - margin - h * scale).astype(np.int64)

    hues = (np.arange(len(anchors_cells)) * 180 // max(len(anchors_cells), 1)).astype(np.uint8)
    hsv = np.stack([hues, np.full_like(hues, 200), np.full_like(hues, 220)], 1)[None]
    colours = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]
    x, y = to_px(wh_cells[:, 0], wh_cells[:, 1])
    for dx, dy in ((0, 0), (1, 0), (0, 1), (1, 1)):  # 2x2 dots, written as one array assignment each
        img[np.clip(y + dy, 0, size - 1), np.clip(x + dx, 0, size - 1)] = colours[assignment]
    origin = (margin, size - margin)
    cv2.line(img, origin, (size - margin, size - margin), (0, 0, 0), 1)
    cv2.line(img, origin, (margin, margin), (0, 0, 0), 1)
    font = cv2.FONT_HERSHEY_SIMPLEX
    step = max(1, int(np.ceil(span / 8)))
    for t in range(0, int(span) + 1, step):
        tx, ty = to_px(np.array(t), np.array(t))
        cv2.putText(img, str(t), (int(tx) - 4, size - margin + 18), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(img, str(t), (margin - 25, int(ty) + 4), font, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, f"w ({unit})", (size // 2 - 50, size - 12), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(img, "h", (12, size // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    ax, ay = to_px(anchors_cells[:, 0], anchors_cells[:, 1])
    for j in range(len(anchors_cells)):
        colour = tuple(int(c) for c in colours[j])
        cv2.rectangle(img, origin, (int(ax[j]), int(ay[j])), colour, 1)
        cv2.drawMarker(img, (int(ax[j]), int(ay[j])), (0, 0, 0), cv2.MARKER_CROSS, 17, 4)
        cv2.drawMarker(img, (int(ax[j]), int(ay[j])), colour, cv2.MARKER_CROSS, 15, 2)
        label = f"{anchors_cells[j, 0]:.2f}x{anchors_cells[j, 1]:.2f}"
        for thickness, ink in ((3, (255, 255, 255)), (1, (0, 0, 0))):  # outlined: readable over the dots
            cv2.putText(img, label, (int(ax[j]) + 8, int(ay[j]) - 8), font, 0.45, ink, thickness, cv2.LINE_AA)
    ok, png = cv2.imencode(".png", img)
    if not ok:
        raise DarknetError("OpenCV could not encode the plot", path)
    atomic_write(path, png.tobytes())
