"""Downloading MNIST from a mirror, checked against the known SHA-256 sums.

Each file is streamed to a temporary file in the destination folder, its SHA-256 is
checked, and only then is it renamed into place (`os.replace`), so a half-finished or
corrupt download never sits under the real name.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import pathlib
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable

from tqdm.auto import tqdm

from jnet.data.errors import DataError, file_error
from jnet.data.paths import dataset_dir, named_folder, where_to_put

# The mirror that the TFDS MNIST builder and the JAX examples download from.
DEFAULT_MIRROR = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MIRROR_ENV = "JNET_MNIST_MIRROR"  # overrides DEFAULT_MIRROR when set

# SHA-256 of the original gzipped files, in `sha256sum` format (the same sums that
# tensorflow-datasets registers, and shared/data/mnist/SHA256SUMS).
_GZ_SUMS = """
440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609  train-images-idx3-ubyte.gz
3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c  train-labels-idx1-ubyte.gz
8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6  t10k-images-idx3-ubyte.gz
f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6  t10k-labels-idx1-ubyte.gz
"""
# The same files gunzipped, so `verify=True` also works on unpacked copies.
_RAW_SUMS = """
ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte
"""


def parse_sums(text: str) -> dict[str, str]:
    """`{file name: hex sha256}` from `sha256sum` output (one "<sum>  <name>" a line)."""
    return {name: digest for digest, name in (line.split() for line in text.strip().splitlines())}


MNIST_SHA256 = parse_sums(_GZ_SUMS)
MNIST_RAW_SHA256 = parse_sums(_RAW_SUMS)

_CHUNK = 1 << 20


def sha256(path: str | os.PathLike) -> str:
    """The hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: str | os.PathLike, expected: str) -> None:
    """Raises DataError naming `path` and both sums unless its SHA-256 is `expected`."""
    got = sha256(path)
    if got != expected:
        raise file_error(path, f"SHA-256 mismatch: expected {expected}, got {got}")


def download_file(
    url: str, dest: str | os.PathLike, expected_sha256: str, timeout: float = 30.0, hint: str = ""
) -> pathlib.Path:
    """Streams `url` to a temporary file; renames it to `dest` only if its SHA-256 matches.

    Args:
      url: where to fetch from (http, https or file URLs).
      dest: the final path; its folder is created if needed.
      expected_sha256: hex SHA-256 the download must have.
      timeout: seconds to wait for the server on connect and on each read.
      hint: appended to network errors (e.g. where to put the file by hand).

    Returns:
      `dest` as a Path.

    Raises:
      DataError: the server cannot be reached, answers with an error or closes the
        connection early (the message names the URL and adds `hint`), or the checksum is
        wrong (the message names the file and both sums). Nothing is left behind.
    """
    dest = pathlib.Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as e:
        raise file_error(dest.parent, f"cannot write a download here: {e.strerror or e}") from e
    h, received = hashlib.sha256(), 0
    try:
        try:
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
                total = int(resp.headers.get("Content-Length") or 0) or None
                # disable=None: a progress bar on a terminal only, silent in logs and tests.
                with tqdm(
                    total=total, unit="B", unit_scale=True, desc=dest.name, disable=None
                ) as bar:
                    while chunk := resp.read(_CHUNK):
                        out.write(chunk)
                        h.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
        except urllib.error.HTTPError as e:
            raise DataError(f"{url}: download failed: HTTP {e.code} {e.reason}. {hint}") from e
        except (urllib.error.URLError, http.client.HTTPException, OSError) as e:
            reason = getattr(e, "reason", None) or e
            raise DataError(f"{url}: cannot download ({reason}); offline? {hint}") from e
        if total is not None and received != total:  # HTTPResponse.read(n) ends short silently
            raise DataError(
                f"{url}: cannot download (connection closed after {received} of {total} bytes). "
                + hint
            )
        got = h.hexdigest()
        if got != expected_sha256:
            raise file_error(
                dest,
                f"downloaded from {url}: SHA-256 mismatch: expected {expected_sha256}, "
                f"got {got}; the download was discarded",
            )
        os.replace(tmp, dest)  # atomic on one file system: dest is whole or absent
    finally:
        if os.path.exists(tmp):  # any failure: leave no partial file behind
            os.remove(tmp)
    return dest


def download_mnist(
    data_dir: str | os.PathLike | None = None,
    mirror: str | None = None,
    files: Iterable[str] | None = None,
    timeout: float = 30.0,
) -> pathlib.Path:
    """Downloads the MNIST .gz files into the MNIST folder, verified by SHA-256.

    Args:
      data_dir: the folder to hold the files (see `jnet.data.paths.dataset_dir`).
      mirror: base URL holding the four files; default `$JNET_MNIST_MIRROR`, else
        `DEFAULT_MIRROR`.
      files: which of the four `.gz` names to fetch; default all that are missing.
      timeout: seconds per network operation.

    Returns:
      The folder holding the files.
    """
    if data_dir is None:
        named_folder()  # a $JNET_DATA_DIR that does not exist is an error, never created
    folder = dataset_dir("mnist", data_dir, MNIST_SHA256)
    given = "mirror=" if mirror else f"${MIRROR_ENV}="  # name where a bad one came from
    mirror = mirror or os.environ.get(MIRROR_ENV) or DEFAULT_MIRROR
    if urllib.parse.urlsplit(mirror).scheme not in ("http", "https", "file"):
        raise DataError(
            f"{given}{mirror!r} is not an http(s) URL: the MNIST mirror must be one such as "
            f"{DEFAULT_MIRROR!r} (or a file:///local/folder/)"
        )
    if files is None:
        files = [n for n in MNIST_SHA256 if not (folder / n).exists()]
    hint = where_to_put(folder, MNIST_SHA256, "mnist")
    for name in files:
        if name not in MNIST_SHA256:
            raise ValueError(f"unknown MNIST file {name!r}; expected one of {list(MNIST_SHA256)}")
        url = mirror.rstrip("/") + "/" + name
        download_file(url, folder / name, MNIST_SHA256[name], timeout=timeout, hint=hint)
    return folder
