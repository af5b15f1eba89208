"""What a loader is asked for (:class:`Request`), and how a user's own copy of a dataset is found.

A loader reads its dataset from ``request.source`` when the user supplied one (``prepare NAME
--from PATH``: the official archive or the already-extracted folder), else from its raw folder
``request.raw`` (downloading there what is missing). The user's files are read in place or,
for archives, extracted into the raw folder: they are never moved, renamed, written or deleted.
"""
from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import download
from .errors import DatasetUnavailableError



def local_copy(name: str) -> str:
    """How a user hands in a local copy of dataset ``name``: the phrase every loader's message uses (the
    runner and the DAG show these messages too, so they name the command, not a bare flag)."""
    return f"`python -m benchmark.data prepare {name} --from PATH` (in a study config: `sources: {{{name}: PATH}}`)"

@dataclass(frozen=True)
class Request:
    """One loader call: ``raw`` is the dataset's raw folder (shared by aliases such as the
    stand-ins), ``size`` the image size asked for, ``source`` the user's archive or folder (or
    None), ``mirror`` a folder or base URL replacing the download hosts, and
    ``accept_checksum_mismatch`` whether a file that is not the official one may be used."""

    raw: Path
    size: int
    source: Path | None = None
    mirror: str | None = None
    accept_checksum_mismatch: bool = False

    @classmethod
    def make(cls, raw: Path, size: int, source: str | Path | None = None, mirror: str | Path | None = None,
             accept_checksum_mismatch: bool = False) -> Request:
        """A request with ``source`` resolved (it must exist) and ``mirror`` defaulting to the
        ``SHPEFT_DATA_MIRROR`` environment variable."""
        where = Path(source).expanduser().resolve() if source else None
        if where is not None and not where.exists():
            raise DatasetUnavailableError(f"--from {source}: no such file or folder")
        if where is not None and where.suffix.lower() == ".zip" and zipfile.is_zipfile(where):
            download.check_unpack_size(where)  # a zip bomb is refused before anything is written
        mirror = mirror or os.environ.get(download.MIRROR_ENV) or None
        return cls(Path(raw), size, where, str(mirror) if mirror else None, accept_checksum_mismatch)

    def fetch(self, url: str, dest: Path, **checks) -> Path:
        """:func:`download.fetch` through this request's mirror and checksum policy."""
        return download.fetch(url, dest, mirror=self.mirror, accept_mismatch=self.accept_checksum_mismatch,
                              **checks)

    def user_layout(self, dataset: str, find: Callable[[Path], Path | None], folder: str, layout: str,
                    expected_bytes: int | None = None) -> Path:
        """The folder in the authors' layout inside the user's ``source``: ``find(folder)`` returns it
        (accepting, e.g., the folder or its parent) or None. A zip archive is first extracted
        into ``raw/folder`` (afresh: the archive may have changed since the last time), refused
        beforehand if it would unpack to far more than the dataset's ``expected_bytes``, and
        removed again if it does not hold the layout."""
        if self.source.is_dir():
            found = find(self.source)
        elif zipfile.is_zipfile(self.source):
            found = download.extract_layout(self.source, self.raw, folder, find, downloaded=False,
                                            expected_bytes=expected_bytes)
        else:
            raise DatasetUnavailableError(f"{dataset}: {self.source} is neither a folder nor a readable zip archive")
        if found is None:
            raise DatasetUnavailableError(f"{dataset}: {self.source} is not in the authors' layout; expected {layout}")
        return found
