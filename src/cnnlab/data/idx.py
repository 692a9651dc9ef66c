"""A small, strict reader for the IDX files Fashion-MNIST ships in (raw or gzip-compressed).

Format: two zero bytes, a type code (0x08 = unsigned byte), the number of dimensions, then one big-endian
uint32 per dimension, then the data. Every check happens before the data is allocated, so a header that
claims a huge size costs nothing.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..errors import CnnlabError

UBYTE = 0x08
MAX_BYTES = 1 << 30  # 1 GiB: Fashion-MNIST's largest file is 47 MB; anything near this is not an IDX image file
_CHUNK = 1 << 20


def read_idx(path: str | os.PathLike[str], ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw, told apart by content) into a uint8 array of its stated shape."""
    path = Path(path)
    if not path.is_file():
        raise CnnlabError(f"{path}: not a file")
    try:
        with open(path, "rb") as f:
            return _read(f, str(path), ndim)
    except OSError as e:
        raise CnnlabError(f"{path}: cannot read ({e.strerror or e})") from None


def read_idx_bytes(data: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Like :func:`read_idx` for bytes in memory (used by the fuzz tests)."""
    return _read(io.BytesIO(data), name, ndim)


def _read(raw: BinaryIO, name: str, ndim: int | None) -> np.ndarray:
    compressed = raw.read(2) == b"\x1f\x8b"
    raw.seek(0)
    f: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb") if compressed else raw  # type: ignore[assignment]
    try:
        return _parse(f, name, ndim)
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise CnnlabError(f"{name}: corrupt gzip stream ({e}); delete the file and fetch it again") from None


def _read_exact(f: BinaryIO, n: int) -> bytes:
    # Read in chunks so memory grows with the data actually present, not with what a header claims.
    parts, left = [], n
    while left > 0:
        chunk = f.read(min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def _parse(f: BinaryIO, name: str, ndim: int | None) -> np.ndarray:
    header = _read_exact(f, 4)
    if len(header) < 4:
        raise CnnlabError(f"{name}: truncated IDX header ({len(header)} of 4 bytes); fetch the file again")
    zero, dtype, dims_n = struct.unpack(">HBB", header)
    if zero != 0 or dtype != UBYTE:
        raise CnnlabError(f"{name}: not an unsigned-byte IDX file (magic number 0x{header.hex()}, expected 0x000008XX)")
    if ndim is not None and dims_n != ndim:
        raise CnnlabError(f"{name}: has {dims_n} dimensions, expected {ndim}")
    if dims_n == 0:
        raise CnnlabError(f"{name}: IDX header declares 0 dimensions")
    dims_raw = _read_exact(f, 4 * dims_n)
    if len(dims_raw) < 4 * dims_n:
        raise CnnlabError(f"{name}: truncated IDX header (dimensions missing); fetch the file again")
    shape = struct.unpack(f">{dims_n}I", dims_raw)
    size = 1
    for d in shape:
        size *= d
    if size > MAX_BYTES:
        raise CnnlabError(f"{name}: header claims {size:,} bytes of data (shape {shape}), over the 1 GiB limit")
    data = _read_exact(f, size)
    if len(data) < size:
        raise CnnlabError(
            f"{name}: truncated: header promises {size:,} data bytes, file has {len(data):,}; fetch it again"
        )
    if f.read(1):
        raise CnnlabError(f"{name}: trailing bytes after the {size:,} data bytes the header promises")
    return np.frombuffer(data, dtype=np.uint8).reshape(shape)


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write a uint8 array as an IDX file (gzip when the name ends in ``.gz``); used for synthetic data."""
    path = Path(path)
    arr = np.ascontiguousarray(array, dtype=np.uint8)
    blob = struct.pack(">HBB", 0, UBYTE, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()
    if path.suffix == ".gz":
        blob = gzip.compress(blob, mtime=0)
    path.write_bytes(blob)
