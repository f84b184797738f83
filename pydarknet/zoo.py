"""Models by name: a bundled cfg with its official weights, fetched once into the cache, or bundled ones.

`pydarknet.load("yolo9000")` and `pydarknet detect yolov2-tiny-voc dog.jpg` find the model here. Adding
a model is one `MODELS` entry: its cfg in the bundled cfg/ directory, the weights' URL, size(s), sha256.
Official weights are kept in `weights_dir()`: `$PYDARKNET_HOME/weights`, by default under the user's
cache directory (`$XDG_CACHE_HOME` or ~/.cache, as torch.hub does), and fetched on first use by
`pydarknet.download` (resumable, size and sha256 checked).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from pydarknet.errors import DarknetError
from pydarknet.fileio import home
from pydarknet.paths import ASSETS

PJREDDIE = "https://pjreddie.com/media/files/"
# AlexeyAB's release assets (its README's model zoo; yolov3 and yolov3-tiny it links at pjreddie.com).
ALEXEYAB = "https://github.com/AlexeyAB/darknet/releases/download/"


@dataclass(frozen=True)
class Model:
    cfg: str | None  # file in the bundled cfg/; None for a weights-only file (a training start)
    weights: str  # the official URL, or a bundled file (under ASSETS)
    sizes: tuple[int, ...] = ()  # the sizes the weights file may have; checked on download and in the cache
    sha256: str | None = None
    names: str | None = None  # class names where the class count does not pick them (pydarknet.names)
    sample: str | None = None  # bundled image `detect NAME` runs on when given none

    @property
    def file(self) -> str:
        return self.weights.rsplit("/", 1)[-1]

    @property
    def bundled(self) -> bool:
        return "://" not in self.weights


def _both_headers(floats: int) -> tuple[int, int]:
    """A Darknet 0.1 header (16 bytes: int seen) or 0.2 (20 bytes: size_t seen) before the floats."""
    return 16 + 4 * floats, 20 + 4 * floats


# Sizes: each is 16 or 20 header bytes + 4 * the floats its cfg needs (tests/test_zoo.py checks that). The
# single sizes are the Content-Length the servers send, as recorded by their users. No sha256 is published.
MODELS: dict[str, Model] = {
    "shapes": Model("shapes.cfg", "models/shapes.weights", names="data/shapes.names", sample="data/shapes.jpg"),
    "yolov2": Model("yolov2.cfg", PJREDDIE + "yolov2.weights", (203934260,)),
    "yolov2-voc": Model("yolov2-voc.cfg", PJREDDIE + "yolov2-voc.weights", (202704260,)),
    "yolov2-tiny": Model("yolov2-tiny.cfg", PJREDDIE + "yolov2-tiny.weights", (44948600,)),
    "yolov2-tiny-voc": Model("yolov2-tiny-voc.cfg", PJREDDIE + "yolov2-tiny-voc.weights", (63471556,)),
    "yolo9000": Model("yolo9000.cfg", PJREDDIE + "yolo9000.weights", _both_headers(48807501)),
    "darknet19": Model("darknet19.cfg", PJREDDIE + "darknet19.weights", _both_headers(20856776)),
    "darknet19_448": Model("darknet19_448.cfg", PJREDDIE + "darknet19_448.weights", _both_headers(20856776)),
    # darknet19_448's first 23 layers (Darknet's `partial`): where YOLOv2 training starts.
    "darknet19_448.conv.23": Model(None, PJREDDIE + "darknet19_448.conv.23", (79327120,)),
    # The [yolo] family (AlexeyAB's semantics). Sizes as recorded by users of these URLs: a 20-byte header.
    "yolov3": Model("yolov3.cfg", PJREDDIE + "yolov3.weights", (248007048,)),
    "yolov3-tiny": Model("yolov3-tiny.cfg", PJREDDIE + "yolov3-tiny.weights", (35434956,)),
    "yolov4": Model("yolov4.cfg", ALEXEYAB + "darknet_yolo_v3_optimal/yolov4.weights", (257717640,)),
    "yolov4-tiny": Model("yolov4-tiny.cfg", ALEXEYAB + "darknet_yolo_v4_pre/yolov4-tiny.weights", (24251276,)),
}


def lookup(name: str) -> Model | None:
    """The entry for `yolov2`, or for its weights file name `yolov2.weights`; None for other names."""
    if name in MODELS:
        return MODELS[name]
    return next((m for m in MODELS.values() if m.file == name), None)


def weights_dir() -> Path:
    return home() / "weights"


def weights_file(model: Model) -> Path:
    """Where the model's weights are (bundled) or are kept once fetched (the cache)."""
    return ASSETS / model.weights if model.bundled else weights_dir() / model.file


def is_cached(model: Model) -> bool:
    """Whether the weights are on disk with a size they may have (the sha256 is checked when fetched)."""
    path = weights_file(model)
    return path.is_file() and (not model.sizes or path.stat().st_size in model.sizes)


def unknown_model(name: str) -> DarknetError:
    return DarknetError(f"unknown model {name!r}: expected a .cfg file or one of {', '.join(runnable())} "
                        "(`pydarknet models` lists them)")


def runnable() -> list[str]:
    return [name for name, model in MODELS.items() if model.cfg is not None]


def is_model_name(arg: object) -> bool:
    """A name in MODELS that is not also a file in the working directory (a file wins, as in Darknet)."""
    return isinstance(arg, str) and arg in MODELS and not Path(arg).is_file()


def _looks_like_name(arg: object) -> bool:
    """A string that can only have meant a model: no directory part, no .cfg suffix, not a file."""
    return (isinstance(arg, str) and bool(arg) and os.sep not in arg and "/" not in arg
            and not arg.endswith(".cfg") and not Path(arg).exists())


def model_weights(name: str, progress: bool = True) -> Path:
    """The model's weights file: bundled, cached, or fetched into the cache now (one-line error offline)."""
    from pydarknet.download import download

    model = MODELS[name]
    if model.bundled or is_cached(model):
        return weights_file(model)
    try:
        return download(name, weights_dir(), progress=progress).path
    except DarknetError as err:
        raise DarknetError(f"model {name!r}: its weights are not in {weights_dir()} and fetching them failed: "
                           f"{err} (to run offline, put {model.file} there or set PYDARKNET_HOME)") from None


def model_cfg(cfg: str | Path) -> str | Path:
    """A model name's bundled cfg; a path as it is."""
    if is_model_name(cfg):
        model = MODELS[cfg]
        if model.cfg is None:
            raise DarknetError(f"{cfg!r} is a weights file without a network to run (a training start); "
                               f"models: {', '.join(runnable())}")
        return ASSETS / "cfg" / model.cfg
    if _looks_like_name(cfg):
        raise unknown_model(str(cfg))
    return cfg


def resolve(cfg: str | Path, weights: str | Path | None) -> tuple[str | Path, str | Path | None]:
    """`load()`'s cfg and weights: a model name becomes its bundled cfg and, when no weights are given,
    its weights (fetched on first use). Paths pass through."""
    if weights is None and is_model_name(cfg):
        return model_cfg(cfg), model_weights(cfg)
    return model_cfg(cfg), weights


class DetectInputs(NamedTuple):
    cfg: str
    weights: str | None  # None: the named model's own
    images: list[str]
    names: str | None  # the named model's class names file, if it has one


def detect_inputs(items: list[str]) -> DetectInputs:
    """`detect MODEL [IMAGE...]` or `detect CFG WEIGHTS IMAGE...`: a known model name first takes no
    weights, and runs on its sample image when given none."""
    first, rest = items[0], items[1:]
    if is_model_name(first):
        model = MODELS[first]
        images = rest or ([model.sample] if model.sample else [])
        if not images:
            raise DarknetError(f"detect {first}: give one or more images")
        return DetectInputs(first, None, images, model.names)
    if _looks_like_name(first):
        raise unknown_model(first)
    if len(items) < 3:
        raise DarknetError("detect: expected MODEL [IMAGE...] or CFG WEIGHTS IMAGE...")
    return DetectInputs(first, rest[0], rest[1:], None)
