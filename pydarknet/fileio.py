"""Files in and out: reading a user's file or stopping with one line that names it, and writing atomically
(a temporary file in the same directory, flushed to disk, then renamed), so that a kill never leaves half a
file behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from pydarknet.errors import DarknetError


def open_binary(path: str | Path, what: str) -> BinaryIO:
    """`path` opened for reading; a DarknetError naming it when it cannot be (`what`: the kind of file, as
    the message names it: "cfg file", "weights file", ...)."""
    path = Path(path)
    try:
        return path.open("rb")
    except IsADirectoryError:
        raise DarknetError(f"is a directory, expected a {what}", path) from None
    except OSError as err:
        raise DarknetError(f"cannot read {what}: {err.strerror or err}", path) from None


def read_bytes(path: str | Path, what: str) -> bytes:
    """The whole file (see `open_binary`)."""
    with open_binary(path, what) as fh:
        try:
            return fh.read()
        except OSError as err:  # e.g. a directory on systems where open() succeeds
            raise DarknetError(f"cannot read {what}: {err.strerror or err}", path) from None


def read_text(path: str | Path, what: str, errors: str = "replace") -> str:
    """The file as UTF-8 text; undecodable bytes replaced (as Darknet reads bytes) unless `errors` says
    otherwise."""
    return read_bytes(path, what).decode("utf-8", errors=errors)


def _sync_replace(tmp: Path, path: Path) -> None:
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write(path: str | Path, data: bytes, make_dirs: bool = True) -> None:
    """Write `data` to `path` through a temporary file in the same directory, flushed to disk and renamed
    over `path`; its directories are made first unless `make_dirs=False`."""
    path = Path(path)
    if make_dirs:
        path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp's 0600 would make checkpoints private to their writer
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path`, with the same extension (writers such as OpenCV's choose the format by
    it), for a writer that needs a file name; renamed over `path` when the block ends without an exception,
    removed otherwise."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{secrets.token_hex(4)}.tmp{path.suffix}")
    try:
        yield tmp
        _sync_replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def home() -> Path:
    """Where pydarknet keeps what it fetches or builds: `$PYDARKNET_HOME`, else `$XDG_CACHE_HOME/pydarknet`,
    else ~/.cache/pydarknet."""
    if os.environ.get("PYDARKNET_HOME"):
        return Path(os.environ["PYDARKNET_HOME"]).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path("~/.cache").expanduser()
    return Path(cache) / "pydarknet"
