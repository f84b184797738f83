"""The `pt` format (a plain state dict + the cfg text) and conversions between `.weights` and `.pt`.

A `pt` file is `torch.save` of a dict of plain types and tensors only, so `torch.load(weights_only=True)`
reads it without unpickling arbitrary objects: pt files may come from anywhere.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import Any

import torch

import pydarknet
from pydarknet.cfg import parse_cfg_text, write_cfg
from pydarknet.errors import DarknetError
from pydarknet.export.codegen import tree_tables
from pydarknet.fileio import atomic_write
from pydarknet.network import Darknet
from pydarknet.weights import weights_bytes

PT_FORMAT = "pydarknet-pt"
PT_VERSION = 1


def tables(net: Darknet) -> dict[str, torch.Tensor]:
    """Derived index tensors that are not parameters (WordTree group permutations), for `codegen` models."""
    out = {}
    for i, layer in enumerate(net.layers):
        tree = getattr(layer, "tree", None)
        if tree is not None:
            perm, inverse, _ = tree_tables(tree)
            out[f"layers.{i}.tree_perm"], out[f"layers.{i}.tree_inverse"] = perm, inverse
    return out


def export_state_dict(net: Darknet, path: str | Path, upto: int | None = None) -> None:
    """Write the `pt` format: state dict, cfg text, weights header; `upto` records a partial network
    (only its first `upto` layers' weights go back into a .weights file)."""
    state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}  # clone: no shared storage
    payload: dict[str, Any] = {
        "format": PT_FORMAT,
        "version": PT_VERSION,
        "cfg": write_cfg(net.sections),
        "cfg_name": net.cfg_path.name,
        "weights_header": list(net.weights_header),
        "upto": upto,
        "state_dict": state,
        "tables": tables(net),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write(path, buf.getvalue())


def read_pt(path: str | Path) -> dict[str, Any]:
    """The dict of a `pt` file, checked; never unpickles anything but tensors and plain types."""
    path = Path(path)
    if path.is_dir():
        raise DarknetError("is a directory, expected a .pt file", path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DarknetError("no such file", path) from None
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, struct.error) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DarknetError(f"not a pydarknet .pt file ({first})", path) from None
    if not isinstance(payload, dict) or payload.get("format") != PT_FORMAT:
        raise DarknetError(f"not a pydarknet .pt file (no format={PT_FORMAT!r} entry)", path)
    if payload.get("version") != PT_VERSION:
        raise DarknetError(f"pt format version {payload.get('version')!r}, this pydarknet reads {PT_VERSION}",
                           path)
    for key, kind in (("cfg", str), ("state_dict", dict), ("weights_header", list)):
        if not isinstance(payload.get(key), kind):
            raise DarknetError(f"damaged .pt file: {key!r} is missing or not a {kind.__name__}", path)
    return payload


def network_from_pt(payload: dict[str, Any], path: str | Path) -> Darknet:
    # The cfg is parsed as if it lived at `path`: tree=/map= files resolve next to the pt file first.
    net = Darknet(parse_cfg_text(payload["cfg"], str(path)), path)
    try:
        net.load_state_dict(payload["state_dict"], strict=True)
    except RuntimeError as err:
        raise DarknetError(f"state dict does not match its cfg: {str(err).splitlines()[0]}", path) from None
    net.weights_header = tuple(int(v) for v in payload["weights_header"])
    return net.eval()


def load_pt(path: str | Path, device: str | torch.device = "cpu") -> Darknet:
    """Rebuild the network of a `pt` file (in eval mode)."""
    return network_from_pt(read_pt(path), path).to(torch.device(device))


def weights_to_pt(cfg: str | Path, weights: str | Path, out: str | Path, upto: int | None = None) -> None:
    export_state_dict(pydarknet.load(cfg, weights, exact=True, upto=upto), out, upto=upto)


def pt_to_weights(pt: str | Path, out: str | Path) -> None:
    """The .weights file the pt was made from, byte for byte (header version and seen included)."""
    payload = read_pt(pt)
    atomic_write(out, weights_bytes(network_from_pt(payload, pt), upto=payload.get("upto")))
