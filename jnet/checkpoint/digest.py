"""SHA-256 digests of a checkpoint's arrays and metadata, so a flipped bit is caught."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np


def array_digest(value: Any) -> str:
    """Digest of an array's dtype, shape and bytes (C order), as read back on the host."""
    a = np.ascontiguousarray(np.asarray(value))
    h = hashlib.sha256(f"{a.dtype.str}{a.shape}".encode())
    h.update(a.tobytes())
    return h.hexdigest()


def meta_digest(meta: dict) -> str:
    """Digest of JSON metadata in canonical form (sorted keys), without its own digest."""
    body = {k: v for k, v in meta.items() if k != "meta_digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
