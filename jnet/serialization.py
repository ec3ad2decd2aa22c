"""`save` and `load`: a trained model as one file, written atomically and checksummed.

The file is `MAGIC`, an 8-byte little-endian header length, a JSON header, then each
array's raw bytes (C order). The header holds the tree (dicts, lists, tuples, None and
arrays), each array's dtype, shape, offset and SHA-256 digest, the user's metadata and a
digest of the header itself: a flipped byte anywhere is a `CorruptError` naming the file,
never wrong weights. Arrays are gathered to the host when saved (a model sharded over
several devices or processes) and loaded as host-backed `jax.Array`s on the default device,
so a file saved on 8 devices loads on 1 and back.
"""

from __future__ import annotations

import json
import os
import pathlib
import tempfile
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jnet.checkpoint.digest import array_digest, meta_digest
from jnet.checkpoint.store import CorruptError, _host_value
from jnet.layers import Params, State

MAGIC = b"JNETMODEL1\n"  # the format's name and version


def _encode(tree: Any, arrays: list, where: str) -> Any:
    """The tree as JSON, its arrays appended to `arrays` and replaced by their index."""
    if isinstance(tree, dict):
        if not all(isinstance(k, str) for k in tree):
            raise TypeError(f"save: {where} has a dict with keys that are not strings")
        return {"dict": {k: _encode(v, arrays, f"{where}[{k!r}]") for k, v in tree.items()}}
    if isinstance(tree, list | tuple) and not hasattr(tree, "_fields"):
        kind = "list" if isinstance(tree, list) else "tuple"
        return {kind: [_encode(v, arrays, f"{where}[{i}]") for i, v in enumerate(tree)]}
    if tree is None:
        return None
    if isinstance(tree, jax.Array | np.ndarray | np.generic | float | int):
        value = np.asarray(_host_value(tree) if isinstance(tree, jax.Array) else tree)
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            raise TypeError(f"save: {where} is a PRNG key; save its jax.random.key_data")
        arrays.append(np.ascontiguousarray(value))
        return {"array": len(arrays) - 1}
    raise TypeError(
        f"save: {where} is a {type(tree).__name__}; a model is dicts, lists, tuples, None "
        "and arrays"
    )


def _decode(node: Any, arrays: list) -> Any:
    if node is None:
        return None
    (kind, value), = node.items()
    if kind == "dict":
        return {k: _decode(v, arrays) for k, v in value.items()}
    if kind in ("list", "tuple"):
        items = [_decode(v, arrays) for v in value]
        return items if kind == "list" else tuple(items)
    return arrays[value]


def save(
    path: str | os.PathLike,
    params: Params,
    model_state: State = (),
    *,
    metadata: dict | None = None,
) -> pathlib.Path:
    """Writes `params` and `model_state` (and JSON `metadata`) to the one file `path`.

    Atomic: written to a temporary file beside `path`, flushed to disk, then renamed over
    it, so a crash leaves the old file or the new one, never half of one. Returns the path.
    Raises TypeError for a leaf that is not an array (or a metadata that is not JSON).
    """
    path = pathlib.Path(path)
    arrays: list[np.ndarray] = []
    tree = {"params": _encode(params, arrays, "params"),
            "model_state": _encode(model_state, arrays, "model_state")}  # fmt: skip
    table, offset = [], 0
    for a in arrays:
        table.append({"dtype": a.dtype.name, "shape": list(a.shape), "offset": offset,
                      "nbytes": a.nbytes, "sha256": array_digest(a)})  # fmt: skip
        offset += a.nbytes
    header = {"tree": tree, "arrays": table, "metadata": metadata or {}}
    try:
        header["meta_digest"] = meta_digest(header)
    except TypeError as e:
        raise TypeError(f"save: metadata must be JSON (dicts, lists, str, numbers): {e}") from None
    body = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + len(body).to_bytes(8, "little") + body)
            for a in arrays:
                f.write(a.tobytes())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike) -> tuple[Params, State, dict]:
    """Reads what `save` wrote: `(params, model_state, metadata)`.

    Every array and the header are checked against their SHA-256 digests. Raises
    FileNotFoundError for a missing file and `jnet.checkpoint.CorruptError` naming the file
    for one that is damaged, truncated or not a jnet model.
    """
    path = pathlib.Path(path)
    raw = path.read_bytes()
    try:
        header, arrays = _parse(raw)
    except CorruptError as e:
        raise CorruptError(f"load: {path} {e}") from None
    except Exception as e:  # any damage the parse trips on
        raise CorruptError(f"load: {path} is damaged ({type(e).__name__}: {e})") from None
    tree = header["tree"]
    params = _decode(tree["params"], arrays)
    model_state = _decode(tree["model_state"], arrays)
    return params, model_state, header["metadata"]


def _parse(raw: bytes) -> tuple[dict, list]:
    if not raw.startswith(MAGIC):
        raise CorruptError("is not a jnet model file (it does not start with the format's name)")
    start = len(MAGIC) + 8
    size = int.from_bytes(raw[len(MAGIC) : start], "little")
    header = json.loads(raw[start : start + size])
    if meta_digest(header) != header.get("meta_digest"):
        raise CorruptError("has a header that does not match its digest (edited or damaged)")
    data = raw[start + size :]
    if len(data) != sum(entry["nbytes"] for entry in header["arrays"]):
        raise CorruptError(f"holds {len(data)} bytes of arrays, its header says otherwise")
    arrays = []
    for i, entry in enumerate(header["arrays"]):
        chunk = data[entry["offset"] : entry["offset"] + entry["nbytes"]]
        a = np.frombuffer(chunk, jnp.dtype(entry["dtype"])).reshape(entry["shape"])
        if array_digest(a) != entry["sha256"]:
            raise CorruptError(f"has array {i} {tuple(a.shape)} not matching its digest")
        arrays.append(jnp.asarray(a))
    return header, arrays
