"""Where data files live: explicit `data_dir` > `$JNET_DATA_DIR/<name>` > the user cache.

The user cache is `$XDG_CACHE_HOME/jnet/<name>`, or `~/.cache/jnet/<name>` when
`XDG_CACHE_HOME` is unset. `JNET_DATA_DIR` names a folder that holds one sub-folder per
dataset (`mnist/`, `catvnoncat/`), like `shared/data` in this project.

A folder that was named (`data_dir`, or `$JNET_DATA_DIR`) is the user's: `named_folder`
refuses one that does not exist rather than create it, and the one loading path of the
experiments, benchmarks and tests (`jnet.data.mnist_flat`) downloads only into the cache.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterable

from jnet.data.errors import DataError

DATA_DIR_ENV = "JNET_DATA_DIR"


def cache_dir() -> pathlib.Path:
    """The user cache folder for jnet: `$XDG_CACHE_HOME/jnet`, else `~/.cache/jnet`."""
    base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
    return pathlib.Path(base).expanduser() / "jnet"


def dataset_dir(
    name: str, data_dir: str | os.PathLike | None = None, files: Iterable[str] = ()
) -> pathlib.Path:
    """The folder that holds (or will hold) the files of dataset `name`.

    Args:
      name: the dataset's sub-folder name, e.g. `"mnist"`.
      data_dir: an explicit folder holding the files. As a convenience, a folder that holds
        none of `files` but has a `name/` sub-folder (a `JNET_DATA_DIR`-style root) resolves
        to that sub-folder.
      files: file names the dataset folder is expected to hold.

    Returns:
      `data_dir`, else `$JNET_DATA_DIR/name`, else `cache_dir() / name`.
    """
    if data_dir is not None:
        if not isinstance(data_dir, str | os.PathLike):
            raise TypeError(
                f"data_dir must be a folder path (str or os.PathLike) or None; got {data_dir!r}"
            )
        folder = pathlib.Path(data_dir).expanduser()
        if (folder / name).is_dir() and not any((folder / f).exists() for f in files):
            return folder / name
        return folder
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return pathlib.Path(env).expanduser() / name
    return cache_dir() / name


def data_root() -> pathlib.Path:
    """The folder holding one sub-folder per dataset: `$JNET_DATA_DIR`, else `cache_dir()`."""
    env = os.environ.get(DATA_DIR_ENV)
    return pathlib.Path(env).expanduser() if env else cache_dir()


def named_folder(data_dir: str | os.PathLike | None = None) -> pathlib.Path | None:
    """The folder the user named, `data_dir` or else `$JNET_DATA_DIR`; None if neither is set.

    Raises:
      DataError: the named folder does not exist (it is never created: a typo in a path
        must not start a download into a new folder).
    """
    if data_dir is not None:
        folder, what = pathlib.Path(data_dir).expanduser(), "data_dir"
    elif os.environ.get(DATA_DIR_ENV):
        folder, what = pathlib.Path(os.environ[DATA_DIR_ENV]).expanduser(), f"${DATA_DIR_ENV}"
    else:
        return None
    if not folder.is_dir():
        state = "is not a folder" if folder.exists() else "does not exist"
        raise DataError(f"{what}: {folder} {state}; a data folder you name is never created")
    return folder


def where_to_put(folder: pathlib.Path, names: Iterable[str], dataset: str) -> str:
    """A sentence for error messages: which files go in which folder, and how to point there."""
    return (
        f"Put {', '.join(names)} in {folder}, or pass data_dir= (the folder holding the files), "
        f"or set {DATA_DIR_ENV} to a folder with a {dataset}/ sub-folder that holds them."
    )
