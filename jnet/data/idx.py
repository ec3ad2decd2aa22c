"""The IDX file format of MNIST: read (gzipped or not, fully validated) and write.

An IDX file is a 4-byte magic number `0x00 0x00 <type code> <ndim>`, then `ndim`
big-endian uint32 dimensions, then the values, big-endian, in C order. MNIST images have
magic 2051 (uint8, 3 dims: N, rows, cols) and labels 2049 (uint8, 1 dim: N).
"""

from __future__ import annotations

import gzip
import os
import pathlib
import zlib

import numpy as np

from jnet.data.errors import file_error

IMAGES_MAGIC = 2051  # 0x00000803: uint8, 3 dims
LABELS_MAGIC = 2049  # 0x00000801: uint8, 1 dim

# IDX type code -> big-endian numpy dtype.
_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("="): code for code, dt in _DTYPES.items()}
_GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike) -> bytes:
    """The contents of `path`, gunzipped when it starts with the gzip magic bytes."""
    path = pathlib.Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except OSError as e:
        raise file_error(path, f"cannot read: {e.strerror or e}") from None
    if raw[:2] != _GZIP_MAGIC:  # judged by content, not by the name's ".gz"
        return raw
    try:
        return gzip.decompress(raw)
    except EOFError:
        raise file_error(
            path, "truncated gzip stream (file ends before the gzip end marker)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as e:
        raise file_error(path, f"corrupt gzip data ({e})") from None


def read_idx(path: str | os.PathLike, magic: int | None = None) -> np.ndarray:
    """Reads one IDX file (gzipped or not) and checks its structure.

    Args:
      path: the file.
      magic: the magic number the file must have (e.g. `IMAGES_MAGIC`), or None for any
        valid IDX magic.

    Returns:
      A writable array in native byte order with the dimensions from the header, e.g.
      uint8 (N, 28, 28) for MNIST images.

    Raises:
      DataError: naming the file and the problem (bad gzip, wrong magic number, truncated
        header or payload, trailing bytes).
    """
    data = read_bytes(path)
    if len(data) < 4:
        raise file_error(path, f"too short for an IDX header ({len(data)} bytes)")
    found = int.from_bytes(data[:4], "big")
    code, ndim = data[2], data[3]
    if data[:2] != b"\0\0" or code not in _DTYPES or ndim == 0:
        raise file_error(path, f"not an IDX file: bad magic number {found} (0x{found:08x})")
    if magic is not None and found != magic:
        raise file_error(path, f"wrong magic number {found} (0x{found:08x}), expected {magic}")
    start = 4 + 4 * ndim
    if len(data) < start:
        raise file_error(path, f"truncated header: {ndim} dimensions need {start} bytes")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = _DTYPES[code]
    need, have = int(np.prod(shape)) * dtype.itemsize, len(data) - start
    if have < need:
        raise file_error(
            path, f"truncated data: header says shape {shape} ({need} bytes), found {have} bytes"
        )
    if have > need:
        raise file_error(
            path, f"{have - need} unexpected bytes after the data of shape {shape} ({need} bytes)"
        )
    arr = np.frombuffer(data, dtype, count=int(np.prod(shape)), offset=start).reshape(shape)
    # frombuffer over bytes is read-only; one copy makes it writable and native-endian.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | os.PathLike, array: np.ndarray, compress: bool | None = None) -> None:
    """Writes `array` as an IDX file; gzipped when `compress` (default: name ends in .gz).

    Args:
      path: the file to write.
      array: uint8, int8, int16, int32, float32 or float64, at least 1 dimension.
      compress: gzip the file; None means "if the name ends in .gz".
    """
    path = pathlib.Path(path)
    array = np.asarray(array)
    code = _CODES.get(array.dtype.newbyteorder("="))
    if code is None or array.ndim == 0:
        raise ValueError(f"IDX cannot hold a {array.ndim}-d {array.dtype} array")
    header = bytes([0, 0, code, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape
    )
    payload = header + np.ascontiguousarray(array, _DTYPES[code]).tobytes()
    if path.name.endswith(".gz") if compress is None else compress:
        payload = gzip.compress(payload, mtime=0)  # mtime=0: same bytes on every run
    path.write_bytes(payload)
