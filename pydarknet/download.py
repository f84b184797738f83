"""Fetch the official Darknet weights: resumable (HTTP Range into a `.part` file), verified, renamed atomically.

A download that stops half-way keeps its `.part` file beside the target; the next run asks the server
for the rest. A file that fails its size or sha256 check is deleted, so the target name only ever
holds a complete, verified file.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import NamedTuple

import requests
from tqdm import tqdm

from pydarknet.errors import DarknetError
from pydarknet.zoo import MODELS, lookup

_CHUNK = 1 << 16  # small reads: on a broken connection only the bytes of the unfinished read are lost
_TIMEOUT = (15, 60)  # seconds to connect, seconds between bytes


def sha256_of(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _check(path: Path, sizes: tuple[int, ...], sha256: str | None) -> str | None:
    """Why `path` is not the expected file, or None when it is."""
    size = path.stat().st_size
    if sizes and size not in sizes:
        return f"size {size} bytes, expected {' or '.join(map(str, sizes))}"
    if sha256 is not None and (digest := sha256_of(path)) != sha256:
        return f"sha256 {digest}, expected {sha256}"
    return None


class Result(NamedTuple):
    path: Path
    downloaded: bool  # False: the target was already there and passed the checks
    verified: bool  # a size or sha256 was checked


def download(name: str, out_dir: str | Path = "weights", url: str | None = None, sha256: str | None = None,
             force: bool = False, progress: bool = True) -> Result:
    """Download an official file (`yolov2`, `yolo9000`, ... see pydarknet.zoo.MODELS) or, with `url`, any
    file saved as `name` in `out_dir`. Known sizes and the given (or known) sha256 are checked; a target that
    already passes them is kept unless `force`."""
    known = lookup(name)
    if known is not None and known.bundled:
        known = None  # shipped in the package: nothing to download
    if known is None and url is None:
        official = [n for n, m in MODELS.items() if not m.bundled]
        raise DarknetError(f"unknown weights {name!r}: expected one of {', '.join(official)} (or give --url)")
    if sha256 is not None and not re.fullmatch(r"[0-9a-fA-F]{64}", sha256):
        raise DarknetError(f"--sha256 {sha256!r}: expected 64 hexadecimal digits")
    file = known.file if known else name
    if Path(file).name != file or file in ("", ".", ".."):
        raise DarknetError(f"{name!r} is not a file name (use -o for the directory)")
    url = url or known.weights
    sizes = known.sizes if known else ()
    sha256 = (sha256 or (known.sha256 if known else None) or "").lower() or None
    target = Path(out_dir) / file
    verified = bool(sizes or sha256)
    if target.is_file() and not force and _check(target, sizes, sha256) is None:
        return Result(target, False, verified)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DarknetError(f"cannot create directory: {err.strerror}", target.parent) from None
    part = target.with_name(target.name + ".part")
    _fetch(url, part, sizes, progress)
    problem = _check(part, sizes, sha256)
    if problem is not None:
        part.unlink(missing_ok=True)  # a wrong file must not be resumed either
        raise DarknetError(f"downloaded file rejected: {problem}", url)
    os.replace(part, target)
    return Result(target, True, verified)


_CONTENT_RANGE = re.compile(r"bytes (?:(\d+)-\d+|\*)/(\d+|\*)")


def _content_range(response: requests.Response) -> tuple[int | None, int | None]:
    """(first byte, full size) of a Content-Range header; None where absent or `*`."""
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    if not match:
        return None, None
    first, total = match.groups()
    return (int(first) if first else None), (int(total) if total != "*" else None)


def _fetch(url: str, part: Path, sizes: tuple[int, ...], progress: bool) -> None:
    """Bring `part` to the server's full file, resuming from its current size when the server allows."""
    offset = part.stat().st_size if part.is_file() else 0
    headers = {"Accept-Encoding": "identity"}  # byte offsets must be those of the file, not of a gzip stream
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with requests.get(url, headers=headers, stream=True, timeout=_TIMEOUT) as response:
            first, total = _content_range(response)
            if response.status_code == 416 and offset:
                if total == offset:  # nothing left to send: the part is already whole
                    return
                part.unlink()  # longer than the file: not a prefix of it
                return _fetch(url, part, sizes, progress)
            if response.status_code == 200:
                offset, total = 0, None  # the server ignored Range and sends the whole file: start afresh
            elif response.status_code != 206:
                raise DarknetError(f"HTTP {response.status_code} {response.reason}", url)
            elif first != offset:
                raise DarknetError(f"server resumed at the wrong byte (Content-Range "
                                   f"{response.headers.get('Content-Range')!r}, asked for {offset})", url)
            if total is None:
                length = response.headers.get("Content-Length", "")
                total = offset + int(length) if length.isdigit() else None
            if sizes and total is not None and total not in sizes:
                part.unlink(missing_ok=True)
                raise DarknetError(f"server offers {total} bytes, expected {' or '.join(map(str, sizes))}", url)
            _write_body(response, part, offset, total, progress)
    except requests.RequestException as err:
        resume = "; run again to resume" if part.is_file() and part.stat().st_size else ""
        raise DarknetError(f"download failed: {_reason(err)}{resume}", url) from None
    received = part.stat().st_size
    if total is not None and received != total:
        raise DarknetError(f"connection closed after {received} of {total} bytes; run again to resume", url)


def _write_body(response: requests.Response, part: Path, offset: int, total: int | None, progress: bool) -> None:
    try:
        with open(part, "r+b" if offset else "wb") as f, tqdm(
                total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024, desc=part.stem,
                disable=None if progress else True, leave=False) as bar:
            f.seek(offset)
            f.truncate()
            # A short body then ends the stream instead of raising and dropping the last read's bytes;
            # _fetch compares what arrived with the expected size.
            response.raw.enforce_content_length = False
            for chunk in response.iter_content(_CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
    except requests.RequestException:
        raise  # an OSError subclass too, but a network problem: _fetch reports it
    except OSError as err:
        raise DarknetError(f"cannot write: {err.strerror}", part) from None


def _reason(err: requests.RequestException) -> str:
    """The root cause of a requests error: `Connection refused`, `Name or service not known`, ..."""
    if isinstance(err, requests.Timeout):
        return "timed out"
    found, todo, seen = None, [err], set()
    while todo:  # requests and urllib3 wrap the socket's OSError in args, reason, __cause__ or __context__
        e = todo.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.strerror:
            found = e.strerror
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]
    return found or str(err).splitlines()[0] or type(err).__name__
