"""Readable names for pytree paths, as messages and reports print them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def leaf_name(path: Sequence[Any], empty: str = "params") -> str:
    """`0.w` for the path `[SequenceKey(0), DictKey('w')]`; `empty` for the empty path."""
    parts = []
    for p in path:
        for attr in ("key", "idx", "name"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
    return ".".join(parts) or empty
