"""A synthetic detection data set in Darknet's layout: filled shapes on cluttered backgrounds.

Shapes differ by outline, not by colour (every shape takes any colour), so a detector has to learn
geometry; backgrounds carry gradients, noise and low-contrast lines/rectangles as distractors.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np

from pydarknet.data.labels import label_path
from pydarknet.errors import DarknetError

Points = np.ndarray  # (N, 2) int32 polygon vertices


def _polygon(cx: float, cy: float, radii: Sequence[float], angle: float) -> Points:
    t = angle + np.arange(len(radii)) * (2 * math.pi / len(radii))
    r = np.asarray(radii)
    return np.round(np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)).astype(np.int32)


def _square(cx: float, cy: float, r: float, rng: np.random.Generator) -> Points:
    return _polygon(cx, cy, [r] * 4, math.pi / 4 + rng.uniform(-0.5, 0.5))


def _triangle(cx: float, cy: float, r: float, rng: np.random.Generator) -> Points:
    return _polygon(cx, cy, [r] * 3, rng.uniform(0, 2 * math.pi))


def _star(cx: float, cy: float, r: float, rng: np.random.Generator) -> Points:
    return _polygon(cx, cy, [r, 0.42 * r] * 5, rng.uniform(0, 2 * math.pi))


def _cross(cx: float, cy: float, r: float, rng: np.random.Generator) -> Points:
    a = 0.3 * r  # half the arm width
    xy = np.array([(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r),
                   (-a, -r), (-a, -a), (-r, -a), (-r, a), (-a, a), (-a, r)])
    t = rng.uniform(0, math.pi / 2)
    rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.round(xy @ rot.T + (cx, cy)).astype(np.int32)


SHAPES: dict[str, Callable[[float, float, float, np.random.Generator], Points] | None] = {
    "circle": None,  # drawn with cv2.circle
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
}


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 HWC: a linear gradient between two colours, low-contrast clutter, pixel noise."""
    c0, c1 = rng.uniform(30, 225, (2, 3)).astype(np.float32)
    t = rng.uniform(0, 2 * math.pi)
    xs, ys = np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32)
    ramp = xs[None, :] * math.cos(t) + ys[:, None] * math.sin(t)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    base = (c0 + c1) / 2
    for _ in range(rng.integers(3, 9)):
        colour = tuple(float(v) for v in np.clip(base + rng.uniform(-30, 30, 3), 0, 255))
        p, q = (tuple(int(v) for v in pt) for pt in rng.integers(0, (w, h), (2, 2)))
        if rng.random() < 0.5:
            cv2.line(img, p, q, colour, int(rng.integers(1, 3)))
        else:
            cv2.rectangle(img, p, q, colour, int(rng.choice([-1, 1])))
    img += (rng.random(img.shape, dtype=np.float32) - np.float32(0.5)) * np.float32(24)
    return np.clip(img, 0, 255).astype(np.uint8)


def _contrasting_colour(mean: np.ndarray, rng: np.random.Generator) -> tuple[float, ...]:
    while True:
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - mean).sum() > 150:
            return tuple(float(v) for v in colour)


def _overlaps(box: tuple[float, ...], boxes: list[tuple[float, ...]]) -> bool:
    """Whether `box` covers more than 10% of the smaller of itself and any placed box."""
    x0, y0, x1, y1 = box
    for a0, b0, a1, b1 in boxes:
        inter = max(0.0, min(x1, a1) - max(x0, a0)) * max(0.0, min(y1, b1) - max(y0, b0))
        if inter > 0.1 * min((x1 - x0) * (y1 - y0), (a1 - a0) * (b1 - b0)):
            return True
    return False


def make_shapes_image(w: int, h: int, classes: Sequence[str], rng: np.random.Generator,
               max_shapes: int = 4) -> tuple[np.ndarray, list[tuple[int, float, float, float, float]]]:
    """One uint8 HWC image and its Darknet label rows (class, cx, cy, bw, bh), relative units."""
    img = _background(w, h, rng)
    mean = img.reshape(-1, 3).mean(axis=0)
    placed: list[tuple[float, ...]] = []
    rows = []
    for _ in range(rng.integers(1, max_shapes + 1)):
        for _ in range(30):  # a shape that finds no free spot is left out
            r = rng.uniform(0.07, 0.2) * min(w, h)
            cx, cy = rng.uniform(r + 1, w - r - 1), rng.uniform(r + 1, h - r - 1)
            if not _overlaps((cx - r, cy - r, cx + r, cy + r), placed):
                break
        else:
            continue
        placed.append((cx - r, cy - r, cx + r, cy + r))
        cls = int(rng.integers(len(classes)))
        colour = _contrasting_colour(mean, rng)
        draw = SHAPES[classes[cls]]
        points = None if draw is None else draw(cx, cy, r, rng)
        mask = np.zeros((h, w), np.uint8)
        # The image gets antialiased edges; the box comes from the same shape drawn hard-edged.
        for canvas, fill, line in ((img, colour, cv2.LINE_AA), (mask, 255, cv2.LINE_8)):
            if points is None:
                cv2.circle(canvas, (round(cx), round(cy)), round(r), fill, -1, line)
            else:
                cv2.fillPoly(canvas, [points], fill, line)
        x, y, bw, bh = cv2.boundingRect(mask)
        rows.append((cls, (x + bw / 2) / w, (y + bh / 2) / h, bw / w, bh / h))
    return img, rows


def make_shapes_dataset(out_dir: str | Path, n_train: int = 1000, n_valid: int = 200,
                        size: tuple[int, int] = (160, 160), classes: Sequence[str] = tuple(SHAPES),
                        seed: int = 0, max_shapes: int = 4) -> Path:
    """Write a Darknet data set under `out_dir` and return its `.data` file.

    Layout: images/{train,valid}/NNNNNN.jpg, labels/... (Darknet's label rule), train.txt and
    valid.txt with absolute image paths, shapes.names, shapes.data (classes, train, valid, names,
    backup) and an empty backup/ directory.
    """
    unknown = [c for c in classes if c not in SHAPES]
    if unknown or not classes or len(set(classes)) != len(classes):
        raise DarknetError(f"classes must be distinct names among {', '.join(SHAPES)}; got {list(classes)}")
    w, h = size
    if w < 32 or h < 32:
        raise DarknetError(f"image size {w}x{h} is too small (at least 32x32)")
    out = Path(out_dir).resolve()
    # Darknet strips every blank from .data lines and derives label paths by substring replacement,
    # so a directory name with blanks or with "images"/"raw"/... would break the written files.
    probe = label_path(out / "images" / "train" / "000000.jpg")
    if any(c.isspace() for c in str(out)) or probe != str(out / "labels" / "train" / "000000.txt"):
        raise DarknetError("directory path must contain no blanks and none of 'images', 'JPEGImages', "
                           "'raw', '.jpg', '.png' (Darknet's label path rule)", out)
    rng = np.random.default_rng(seed)
    for split, count in (("train", n_train), ("valid", n_valid)):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(count):
            img, rows = make_shapes_image(w, h, classes, rng, max_shapes)
            path = out / "images" / split / f"{i:06d}.jpg"
            cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
            Path(label_path(path)).write_text("".join(
                f"{c} {x:.6f} {y:.6f} {bw:.6f} {bh:.6f}\n" for c, x, y, bw, bh in rows))
            paths.append(f"{path}\n")
        (out / f"{split}.txt").write_text("".join(paths))
    (out / "backup").mkdir(exist_ok=True)
    (out / "shapes.names").write_text("".join(f"{c}\n" for c in classes))
    data = out / "shapes.data"
    data.write_text(f"classes = {len(classes)}\ntrain = {out / 'train.txt'}\nvalid = {out / 'valid.txt'}\n"
                    f"names = {out / 'shapes.names'}\nbackup = {out / 'backup'}\n")
    return data
