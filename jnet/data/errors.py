"""The one exception type of `jnet.data`: a data file that is missing or wrong."""

from __future__ import annotations

import os


class DataError(ValueError):
    """A data file is missing, truncated, corrupt or has the wrong layout.

    The message always names the file (or folder) and says what is wrong; for a missing
    file it also says where to put it.
    """


def file_error(path: str | os.PathLike, problem: str) -> DataError:
    """`DataError("<path>: <problem>")`, the shape of every message in this package."""
    return DataError(f"{os.fspath(path)}: {problem}")
