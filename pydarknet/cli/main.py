"""`pydarknet` entry point: Darknet's command groups plus modern conveniences.

Darknet-style single-dash options (`-thresh .25`) are accepted as Darknet users type them.
Every user-input problem ends with one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
import warnings

from pydarknet import __version__
from pydarknet.errors import DarknetError

HIER_HELP = ("WordTree threshold (YOLO9000): from the root group, take the group's most likely class and "
             "descend into its children while p*P > HIER, where P is that class's probability (its "
             "conditional ones multiplied up to the root) and p the product of the P of the classes already "
             "taken; report the last class taken (a root's best class at least); lower = more specific "
             "classes, higher = more general ones (Darknet's -hier, default .5)")


# Darknet's defaults that differ between its two versions, by the cfg's dialect (pydarknet.network.cfg_dialect):
# -thresh of `detector test`, `detect` and `detector demo`, and the demo's NMS threshold.
DIALECT_DEFAULTS = {"pjreddie": {"test": 0.5, "detect": 0.5, "demo": 0.5, "demo_nms": 0.4},
                    "alexeyab": {"test": 0.25, "detect": 0.24, "demo": 0.25, "demo_nms": 0.45}}
LETTER_BOX_HELP = ("letterbox the image (AlexeyAB's -letter_box; its cfgs otherwise resize unless [net] has "
                   "letter_box=1; pjreddie's cfgs always letterbox)")


def dialect_default(value: float | None, dialect: str, key: str) -> float:
    """An option as given, else the default of the cfg's Darknet."""
    return DIALECT_DEFAULTS[dialect][key] if value is None else value


def _add_device(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")


def _add_inference_options(p: argparse.ArgumentParser) -> None:
    """An inference command: the inference network unless --exact (pydarknet.cli.network)."""
    p.add_argument("--exact", action="store_true", help="run the network with Darknet's arithmetic (slower) "
                   "instead of the inference network, whose outputs are within float rounding of it "
                   "(see pydarknet.fast)")
    _add_device(p)


def _add_detect_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-thresh", "--thresh", type=float, default=None, help="detection threshold (default .5; "
                   "AlexeyAB's cfgs: .25 for detector test, .24 for detect)")
    p.add_argument("-hier", "--hier", type=float, default=0.5, help=HIER_HELP)
    p.add_argument("-nms", "--nms", type=float, default=0.45, help="NMS threshold (default .45)")
    p.add_argument("-out", "--out", default=None, help="output image name without extension (default "
                   "predictions; with several images: <image stem>_predictions); for AlexeyAB's cfgs in "
                   "`detector test`, as there, the JSON file of the detections (the image is predictions.jpg)")
    p.add_argument("-ext_output", "--ext-output", action="store_true", help="AlexeyAB's cfgs: print each box "
                   "in pixels after its line")
    p.add_argument("-letter_box", "--letter-box", action="store_true", help=LETTER_BOX_HELP)
    p.add_argument("-dont_show", "--dont-show", action="store_true", help="accepted for Darknet compatibility")
    p.add_argument("--no-draw", action="store_true", help="do not write annotated images")
    p.add_argument("--json", action="store_true", help="print one JSON object per image instead of text")
    p.add_argument("--resize", action="store_true", help="plain resize instead of the letterbox (pjreddie's "
                   "cfgs) or of letter_box=1 (AlexeyAB's)")
    _add_inference_options(p)


def _add_data_cfg_weights(p: argparse.ArgumentParser, weights_nargs: str | None = None) -> None:
    """Darknet's `<command> DATA CFG WEIGHTS` positionals."""
    p.add_argument("data")
    p.add_argument("cfg")
    p.add_argument("weights", nargs=weights_nargs)


def _add_train_options(p: argparse.ArgumentParser, label_policy_help: str) -> None:
    _add_data_cfg_weights(p, weights_nargs="?")
    p.add_argument("-clear", "--clear", action="store_true", help="reset the seen-images counter")
    p.add_argument("--workers", type=int, default=2, help="data loading processes (default 2)")
    p.add_argument("--max-batches", type=int, default=None, help="stop after this many updates")
    p.add_argument("--minutes", type=float, default=None, help="stop (and save) after this much wall time")
    p.add_argument("--amp", action="store_true", help="mixed precision (CUDA only)")
    p.add_argument("--darknet-log", action="store_true", help="print Darknet's per-iteration line")
    p.add_argument("--label-policy", choices=("skip", "stop"), default="skip",
                   help=label_policy_help)
    p.add_argument("--seed", type=int, default=0)


def _add_calc_anchors_options(p: argparse.ArgumentParser, default_clusters: int) -> None:
    p.add_argument("data")
    p.add_argument("-num_of_clusters", "--num-of-clusters", dest="num_of_clusters", type=int,
                   default=default_clusters)
    p.add_argument("-width", "--width", type=int, default=None, help="network input width (default: the cfg's)")
    p.add_argument("-height", "--height", type=int, default=None, help="network input height (default: the cfg's)")
    p.add_argument("--seed", type=int, default=0, help="k-means++ seed (default 0)")
    p.add_argument("--write-cfg", default=None, metavar="CFG", help="a [region] cfg: set anchors= and num= of "
                   "its last [region] (and the filters= before it if num changes), in grid cells; a [yolo] cfg: "
                   "set anchors= of every [yolo], in pixels; in place")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="w/h scatter coloured by cluster")
    p.add_argument("--label-policy", choices=("skip", "stop"), default="skip",
                   help="bad label lines: skip and count (default) or stop with the file:line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="pydarknet", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    det = sub.add_parser("detector", help="Darknet's detector commands").add_subparsers(dest="sub", required=True)
    p = det.add_parser("test", help="detect objects in an image and print Darknet's lines")
    _add_data_cfg_weights(p)
    p.add_argument("images", nargs="*", help="images or directories (prompted for when missing)")
    _add_detect_options(p)
    p.set_defaults(func="pydarknet.cli.detect:detector_test")

    p = det.add_parser("train", help="train a detector as Darknet does")
    _add_train_options(p, "bad label lines: skip and count (default) or stop with the file:line")
    p.add_argument("--loader", choices=("crop", "canvas"), default="crop",
                   help="augmentation: YOLOv2-era jitter crop (default) or the final commit's [.25, 2] scale "
                   "on a grey canvas")
    p.add_argument("-map", "--map", dest="calc_map", action="store_true",
                   help="AlexeyAB's cfgs: mAP@IOU on the valid= list every -mAP_epochs epochs (after burn_in, at "
                   "least every 100 iterations, and at the end), <cfg>_best.weights, the mAP line on the chart")
    p.add_argument("-thresh", "--thresh", type=float, default=0.25, help="with -map: the confidence of its "
                   "precision/recall lines (default .25)")
    p.add_argument("-iou_thresh", "--iou-thresh", dest="iou_thresh", type=float, default=0.5,
                   help="with -map: the IoU of a true positive (default .5)")
    p.add_argument("-mAP_epochs", "--map-epochs", dest="map_epochs", type=int, default=4,
                   help="with -map: epochs of the train list between two mAPs (default 4)")
    _add_device(p)
    p.set_defaults(func="pydarknet.cli.train:detector_train")

    p = det.add_parser("demo", help="detect on every frame of a video file or camera, write the annotated video")
    _add_data_cfg_weights(p)
    p.add_argument("video", nargs="?", help="video file, or camera index (default: camera -c)")
    p.add_argument("-c", dest="camera", type=int, default=0, help="camera index when no VIDEO (default 0)")
    p.add_argument("-out_filename", "--out-filename", default="predictions.avi",
                   help="annotated video, same size and fps as the input (.avi MJPG, .mp4; default predictions.avi)")
    p.add_argument("-thresh", "--thresh", type=float, default=None, help="detection threshold (default .5; "
                   "AlexeyAB's cfgs: .25)")
    p.add_argument("-hier", "--hier", type=float, default=0.5, help=HIER_HELP)
    p.add_argument("-nms", "--nms", type=float, default=None, help="NMS threshold (pjreddie's demo: do_nms_obj "
                   "at .4; AlexeyAB's: the cfg's nms_kind at .45)")
    p.add_argument("-avg", "--avg", type=int, default=3, help="average the region output over this many frames "
                   "as pjreddie's demo does (default 3; the history starts at zeros, so the first frames detect "
                   "less); 1 = each frame alone. AlexeyAB's demo averages no [yolo] output")
    p.add_argument("-letter_box", "--letter-box", action="store_true", help=LETTER_BOX_HELP)
    p.add_argument("-dont_show", "--dont-show", action="store_true", help="accepted for Darknet compatibility")
    _add_inference_options(p)
    p.set_defaults(func="pydarknet.cli.demo:detector_demo")

    p = det.add_parser("map", help="AP per class and mAP on the valid list: AlexeyAB's report for the [yolo] "
                       "family, else VOC2010+ area and VOC2007 11-point AP")
    _add_data_cfg_weights(p)
    p.add_argument("-thresh", "--thresh", type=float, default=None,
                   help="YOLOv2-era nets: the detection threshold (default .005); AlexeyAB's: the confidence of its "
                   "precision/recall/F1 and average-IoU lines (default .25)")
    p.add_argument("-iou_thresh", "-iou", "--iou-thresh", "--iou", dest="iou", type=float, default=0.5,
                   help="IoU with a label box that makes a true positive (default .5)")
    p.add_argument("-points", "--points", type=int, default=0, help="AlexeyAB's nets: 0 area under the curve "
                   "(default), 11 VOC2007, 101 COCO recall points")
    p.add_argument("--coco", action="store_true", help="also COCO mAP@[.5:.95] (needs pycocotools: the coco extra)")
    p.add_argument("--pr-dir", default=None, help="write a precision-recall curve PNG per class here")
    _add_inference_options(p)
    p.set_defaults(func="pydarknet.cli.evaluate:detector_map")

    p = det.add_parser("valid", help="write Darknet's result files for the valid list (by the .data eval=: "
                       "VOC comp4_det_test_<class>.txt, coco_results.json, imagenet-detection.txt) under results=")
    _add_data_cfg_weights(p)
    p.add_argument("-out", "--out", default=None, help="file name prefix inside the results= directory")
    _add_inference_options(p)
    p.set_defaults(func="pydarknet.cli.evaluate:detector_valid")

    p = det.add_parser("recall", help="Darknet's proposal recall lines (on stderr) for the valid list")
    _add_data_cfg_weights(p)
    _add_inference_options(p)
    p.set_defaults(func="pydarknet.cli.evaluate:detector_recall")

    p = det.add_parser("calc_anchors", help="AlexeyAB's k-means anchors in pixels: its report, anchors.txt, "
                       "counters_per_class.txt")
    _add_calc_anchors_options(p, default_clusters=5)
    p.add_argument("-show", "--show", action="store_true", help="write cloud.png (AlexeyAB's anchor plot)")
    p.set_defaults(func="pydarknet.cli.analysis:detector_calc_anchors")

    p = sub.add_parser("detect", help="short form: detect MODEL [IMAGE...] or CFG WEIGHTS IMAGE... "
                       "(names by class count)")
    p.add_argument("inputs", nargs="+", metavar="MODEL|CFG WEIGHTS IMAGE",
                   help="a model name (`pydarknet models`; weights fetched on first use, the demo model "
                   "`shapes` runs on its sample image when given none) or a cfg and weights file, then images "
                   "or directories")
    p.add_argument("--names", default=None, help="class names file")
    p.add_argument("--data", default=None, help=".data file whose names= to use")
    _add_detect_options(p)
    p.set_defaults(func="pydarknet.cli.detect:detect")

    cls = sub.add_parser("classifier", help="Darknet's classifier commands").add_subparsers(dest="sub",
                                                                                         required=True)
    p = cls.add_parser("predict", help="print the top-k classes of an image")
    _add_data_cfg_weights(p)
    p.add_argument("image")
    p.add_argument("-top", "--top", type=int, default=None, help="how many (default: the .data file's top=)")
    _add_inference_options(p)
    p.set_defaults(func="pydarknet.cli.classify:classifier_predict")

    p = cls.add_parser("train", help="train a classifier as Darknet does (labels from the image paths)")
    _add_train_options(p, "a path matching no label or several: skip and count (default) or stop")
    _add_device(p)
    p.set_defaults(func="pydarknet.cli.train:classifier_train")

    p = cls.add_parser("valid", help="top-1 and top-k accuracy on the valid list (centre crop, Darknet's lines)")
    _add_data_cfg_weights(p)
    p.add_argument("-top", "--top", type=int, default=None, help="k (default: the .data file's top=, else 1)")
    _add_inference_options(p)
    p.set_defaults(func="pydarknet.cli.train:classifier_valid")

    p = sub.add_parser("summary", help="the layer table Darknet prints for a cfg")
    p.add_argument("cfg", help="a cfg file or a model name (`pydarknet models`)")
    p.set_defaults(func="pydarknet.cli.tools:summary")

    p = sub.add_parser("partial", help="keep the first K layers' weights (Darknet's partial)")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("out")
    p.add_argument("k", type=int)
    p.set_defaults(func="pydarknet.cli.tools:partial")

    p = sub.add_parser("synth", help="write the synthetic shapes detection data set")
    p.add_argument("out_dir")
    p.add_argument("--train", type=int, default=2000)
    p.add_argument("--valid", type=int, default=200)
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func="pydarknet.cli.tools:synth")

    p = sub.add_parser("export", help="write a network as ONNX, TorchScript or a self-contained .pt")
    p.add_argument("cfg")
    p.add_argument("weights")
    p.add_argument("-o", "--out", required=True)
    p.add_argument("--format", choices=("onnx", "torchscript", "pt"), default=None,
                   help="default: from OUT's suffix (.onnx, .ts, .pt)")
    p.add_argument("--with-decode", action="store_true", help="append the region decode: outputs boxes "
                   "(network-relative xywh), objectness and class probs (onnx, torchscript)")
    p.add_argument("--opset", type=int, default=None, help="ONNX opset (default 17)")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func="pydarknet.cli.export:export")

    p = sub.add_parser("codegen", help="print PyTorch source of one nn.Module class for a cfg")
    p.add_argument("cfg")
    p.add_argument("--class-name", default="DarknetModel")
    p.set_defaults(func="pydarknet.cli.export:codegen")

    p = sub.add_parser("convert", help=".weights -> .pt (needs --cfg) or .pt -> .weights (byte for byte)")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--cfg", default=None, help="the network's cfg (for .weights input)")
    p.add_argument("--upto", type=int, default=None, help="a partial .weights file: its first UPTO layers")
    p.add_argument("--force", action="store_true", help="overwrite OUTPUT if it exists")
    p.set_defaults(func="pydarknet.cli.export:convert")

    p = sub.add_parser("models", help="the models `detect` and `load` take by name: size, cached or not")
    p.set_defaults(func="pydarknet.cli.models:models")

    p = sub.add_parser("download", help="fetch an official weights file (resumable, size/sha256 checked)")
    p.add_argument("name", help="an official name (`pydarknet models`: yolov2, yolo9000, darknet19_448.conv.23, "
                   "...); any file name with --url")
    p.add_argument("-o", "--out-dir", default="weights", help="directory to save into (default weights)")
    p.add_argument("--url", default=None, help="download from here instead of the official URL")
    p.add_argument("--sha256", default=None, help="expected sha256 of the file")
    p.add_argument("--force", action="store_true", help="download again even if the file is there")
    p.set_defaults(func="pydarknet.cli.download:download")

    weights = sub.add_parser("weights", help=".weights file tools").add_subparsers(dest="sub", required=True)
    p = weights.add_parser("info", help="header, seen, float count; with a cfg: does it fit, layers covered")
    p.add_argument("file")
    p.add_argument("cfg", nargs="?")
    p.set_defaults(func="pydarknet.cli.export:weights_info")

    p = sub.add_parser("calc_anchors", help="k-means (1 - IoU) anchors from the train= list's labels")
    _add_calc_anchors_options(p, default_clusters=5)
    p.set_defaults(show=False, func="pydarknet.cli.analysis:calc_anchors")

    p = sub.add_parser("wordtree", help="a class's path to the WordTree root (YOLO9000)")
    p.add_argument("name", help="synset id (n02084071), class index or name (dog)")
    p.add_argument("--tree", default="data/9k.tree")
    p.add_argument("--names", default="data/9k.names")
    p.set_defaults(func="pydarknet.cli.analysis:wordtree")
    return parser


def _call(target: str, args: argparse.Namespace) -> int:
    import importlib

    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)(args) or 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    warnings.simplefilter("default")
    warnings.formatwarning = lambda msg, *a, **k: f"warning: {msg}\n"
    try:
        return _call(args.func, args)
    except DarknetError as err:
        print(f"pydarknet: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("pydarknet: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except OSError as err:
        # A file or directory the user named cannot be created or written (reads report DarknetError).
        if err.filename is None:
            raise
        print(f"pydarknet: {DarknetError(err.strerror or str(err), err.filename)}", file=sys.stderr)
        return 2
