"""Darknet `.weights` files: header, then every layer's floats in Darknet's order, both directions."""

from __future__ import annotations

import os
import struct
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pydarknet.errors import DarknetError
from pydarknet.fileio import atomic_write, open_binary
from pydarknet.paths import resolve_path

HEADER_INTS = struct.Struct("<iii")
# Enough for the longest header read_header accepts (3 ints + a 64-bit seen).
_HEADER_MAX = 20


def weighted_layers(net, upto: int | None = None) -> list[tuple[int, object]]:  # noqa: ANN001
    """(index, layer) of the layers that own weights, in file order, for the first `upto` layers."""
    count = len(net.layers) if upto is None else min(upto, len(net.layers))
    return [(i, net.layers[i]) for i in range(count) if hasattr(net.layers[i], "darknet_params")]


def _transposed(layer, tensor) -> bool:  # noqa: ANN001
    return getattr(layer, "fc", None) is not None and tensor is layer.fc.weight


def expected_floats(net, upto: int | None = None) -> int:  # noqa: ANN001
    return sum(t.numel() for _, layer in weighted_layers(net, upto) for t in layer.darknet_params())


def _long_seen(major: int, minor: int, dialect: str = "pjreddie") -> bool:
    """Whether the header stores `seen` as a 64-bit size_t (else a 32-bit int), as the Darknet decides
    (AlexeyAB's has no check for versions past 1000)."""
    if dialect == "alexeyab":
        return (major * 10 + minor) >= 2
    return (major * 10 + minor) >= 2 and major < 1000 and minor < 1000


def read_header(data: bytes, path: str | Path, dialect: str = "pjreddie") -> tuple[tuple[int, int, int], int, int]:
    """((major, minor, revision), seen, header_bytes) as the dialect's Darknet load_weights reads them."""
    if len(data) < HEADER_INTS.size + 4:
        raise DarknetError(f"too short for a weights header ({len(data)} bytes)", path, byte=len(data))
    major, minor, revision = HEADER_INTS.unpack_from(data)
    if major < 0 or minor < 0 or revision < 0:
        raise DarknetError(f"bad header: version {major}.{minor}.{revision}", path, byte=0)
    if _long_seen(major, minor, dialect):
        if len(data) < HEADER_INTS.size + 8:
            raise DarknetError("too short for a weights header", path, byte=len(data))
        (seen,) = struct.unpack_from("<Q", data, HEADER_INTS.size)
        if seen >= 1 << 63:  # net.seen is an int64 buffer
            raise DarknetError(f"bad header: seen={seen} images", path, byte=HEADER_INTS.size)
        return (major, minor, revision), seen, HEADER_INTS.size + 8
    (seen,) = struct.unpack_from("<i", data, HEADER_INTS.size)
    return (major, minor, revision), seen, HEADER_INTS.size + 4


def load_weights(net, path: str | Path, upto: int | None = None) -> None:  # noqa: ANN001
    """Fill `net` from a Darknet weights file. The file must hold exactly the floats the cfg needs
    (for the first `upto` layers when given: Darknet's `partial` files). The floats are read straight
    into each tensor: the file is never held in memory whole (yolo9000: 195 MB more at the peak)."""
    path = resolve_path(path)
    with open_binary(path, "weights file") as fh:
        size = os.fstat(fh.fileno()).st_size
        header, seen, offset = read_header(fh.read(_HEADER_MAX), path, net.dialect)
        transpose = header[0] > 1000 or header[1] > 1000
        need = expected_floats(net, upto)
        have_bytes = size - offset
        if have_bytes % 4:
            raise DarknetError(f"size is not header + whole floats ({have_bytes} bytes after the header)",
                               path, byte=size)
        have = have_bytes // 4
        if have != need:
            which = f"the first {upto} layers of " if upto is not None else ""
            raise DarknetError(f"expected {need} floats for {which}{net.cfg_path}, file has {have}"
                               f" ({'too short' if have < need else 'too long'})", path, byte=offset + 4 * need
                               if have > need else size)
        fh.seek(offset)
        with torch.no_grad():
            for _, layer in weighted_layers(net, upto):
                for tensor in layer.darknet_params():
                    _read_floats(fh, tensor, transpose and _transposed(layer, tensor), path)
    net.seen = seen
    net.weights_header = header


def _read_floats(fh, tensor: torch.Tensor, transposed: bool, path: Path) -> None:  # noqa: ANN001
    """The tensor's floats from the file, in place when its memory is the file's layout (little-endian
    float32, contiguous, on the CPU), else through a copy."""
    count = tensor.numel()
    if count == 0:
        return
    if (not transposed and sys.byteorder == "little" and tensor.device.type == "cpu"
            and tensor.dtype == torch.float32 and tensor.is_contiguous()):
        got = fh.readinto(memoryview(tensor.detach().numpy()).cast("B"))
    else:
        raw = fh.read(4 * count)
        got = len(raw)
        if got == 4 * count:
            chunk = np.frombuffer(raw, dtype="<f4")
            value = chunk.reshape(tensor.shape[1], tensor.shape[0]).T if transposed else chunk.reshape(tensor.shape)
            tensor.copy_(torch.from_numpy(value.copy()))
    if got != 4 * count:  # the size was checked: only a file changed while being read gets here
        raise DarknetError("the file changed while being read", path, byte=fh.tell())


def weights_bytes(net, upto: int | None = None) -> bytes:  # noqa: ANN001
    """The .weights content: the header the net was loaded with (else the one its Darknet writes: pjreddie
    0.2.0, AlexeyAB 0.2.5), seen, floats."""
    major, minor, revision = net.weights_header
    transpose = major > 1000 or minor > 1000
    parts = [HEADER_INTS.pack(major, minor, revision)]
    if _long_seen(major, minor, net.dialect):
        parts.append(struct.pack("<Q", net.seen))
    else:
        parts.append(struct.pack("<i", net.seen))
    for _, layer in weighted_layers(net, upto):
        for tensor in layer.darknet_params():
            value = tensor.detach().float().cpu()
            if transpose and _transposed(layer, tensor):
                value = value.T
            parts.append(value.contiguous().numpy().astype("<f4").tobytes())
    return b"".join(parts)


def save_weights(net, path: str | Path, upto: int | None = None) -> None:  # noqa: ANN001
    atomic_write(path, weights_bytes(net, upto))


def weights_info(path: str | Path, cfg: str | Path | None = None) -> dict[str, Any]:
    """Header and size of a .weights file; with a cfg, whether it fits and how many leading layers it
    covers fully (`layers_covered` is the `upto` that loads a partial file such as darknet19_448.conv.23)."""
    path = Path(path)
    with open_binary(path, "weights file") as fh:
        head = fh.read(_HEADER_MAX)
        size = os.fstat(fh.fileno()).st_size
    if head.startswith(b"PK\x03\x04"):  # a zip archive: what torch.save writes
        raise DarknetError("is a .pt file, not a .weights file (pydarknet convert turns it into one)", path)
    from pydarknet.network import build_network

    net = None if cfg is None else build_network(cfg)
    (major, minor, revision), seen, offset = read_header(head, path, "pjreddie" if net is None else net.dialect)
    floats, trailing = divmod(size - offset, 4)
    info: dict[str, Any] = {"version": f"{major}.{minor}.{revision}", "seen": seen, "header_bytes": offset,
                            "floats": floats, "trailing_bytes": trailing}
    if net is None:
        return info
    counts = {i: sum(t.numel() for t in layer.darknet_params()) for i, layer in weighted_layers(net)}
    covered, total = 0, 0
    for i in range(len(net.layers)):
        if total + counts.get(i, 0) > floats:
            break
        total += counts.get(i, 0)
        covered = i + 1
    expected = sum(counts.values())
    info.update(cfg=str(cfg), expected_floats=expected, fits=floats == expected and not trailing,
                layers=len(net.layers), layers_covered=covered,
                ends_at_layer=total == floats and not trailing)
    return info
