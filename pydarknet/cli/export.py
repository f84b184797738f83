"""`export`, `codegen`, `convert` and `weights info`: networks out of Darknet's formats and back."""

from __future__ import annotations

import argparse
import keyword
import zipfile
from pathlib import Path

import pydarknet
from pydarknet.errors import DarknetError

SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "pt", ".ts": "torchscript", ".torchscript": "torchscript"}


def _refuse_existing(path: str, force: bool) -> None:
    if Path(path).exists() and not force:
        raise DarknetError("already exists (pass --force to overwrite it)", path)


def export(args: argparse.Namespace) -> int:
    fmt = args.format or SUFFIX_FORMATS.get(Path(args.out).suffix.lower())
    if fmt is None:
        raise DarknetError("cannot tell the format from the file name: pass --format onnx|torchscript|pt",
                           args.out)
    if args.with_decode and fmt == "pt":
        raise DarknetError("--with-decode applies to onnx and torchscript, not to pt")
    if args.opset is not None and fmt != "onnx":
        raise DarknetError(f"--opset applies to onnx, not to {fmt}")
    _refuse_existing(args.out, args.force)
    net = pydarknet.load(args.cfg, args.weights, exact=True)
    if fmt == "onnx":
        from pydarknet.export.onnx import export_onnx

        opset = 17 if args.opset is None else args.opset
        export_onnx(net, args.out, opset=opset, with_decode=args.with_decode)
    elif fmt == "torchscript":
        from pydarknet.export.torchscript import export_torchscript

        export_torchscript(net, args.out, with_decode=args.with_decode)
    else:
        from pydarknet.export.convert import export_state_dict

        export_state_dict(net, args.out)
    print(f"Saved {fmt} to {args.out}")
    return 0


def codegen(args: argparse.Namespace) -> int:
    from pydarknet.export.codegen import codegen as write_source
    from pydarknet.network import build_network

    if not args.class_name.isidentifier() or keyword.iskeyword(args.class_name):
        raise DarknetError(f"--class-name {args.class_name!r} is not a Python identifier")
    print(write_source(build_network(args.cfg), args.class_name), end="")
    return 0


def convert(args: argparse.Namespace) -> int:
    """.weights -> .pt (needs the cfg) or .pt -> .weights, told apart by content (a pt file is a zip)."""
    from pydarknet.export.convert import pt_to_weights, weights_to_pt

    source = Path(args.input)
    if not source.is_file():
        raise DarknetError("no such file", source)
    _refuse_existing(args.output, args.force)
    if zipfile.is_zipfile(source):
        if args.cfg is not None or args.upto is not None:
            raise DarknetError("a .pt file carries its cfg: --cfg and --upto are for .weights input", source)
        pt_to_weights(source, args.output)
    else:
        if args.cfg is None:
            raise DarknetError("converting a .weights file needs the network's --cfg", source)
        weights_to_pt(args.cfg, source, args.output, upto=args.upto)
    print(f"Saved {args.output}")
    return 0


def weights_info(args: argparse.Namespace) -> int:
    from pydarknet.weights import weights_info as info

    for key, value in info(args.file, args.cfg).items():
        print(f"{key}: {('yes' if value else 'no') if isinstance(value, bool) else value}")
    return 0
