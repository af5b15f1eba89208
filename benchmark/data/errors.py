"""The data layer's errors: each one is a problem the user can fix, with a message that says how.

``python -m benchmark.data`` prints any :class:`DataError` as one ``error: ...`` line and exits 2.
"""
from __future__ import annotations

from benchmark.cli import UserError


class DataError(UserError):
    """A user-fixable problem with a dataset: missing, refused, degenerate or unreadable files."""


class DatasetUnavailableError(DataError, RuntimeError):
    """The dataset's files are missing and could not be fetched; the message says how to get them."""


class ChecksumMismatchError(DataError):
    """A supplied file is not the official one (its checksum differs); the message names both
    checksums and the option that accepts the file anyway."""


class DegenerateDatasetError(DataError, ValueError):
    """The data cannot train a classifier: fewer than two classes, an empty split, or a class
    without a training image."""


class CorruptFileError(DataError):
    """A file (archive, array, image, cached tensor) cannot be read."""


class OversizedArchiveError(DataError):
    """An archive would unpack to far more than its dataset holds (a zip bomb, or another dataset);
    refused before anything is extracted."""


class SplitFileError(DataError, ValueError):
    """A split file of an image folder is wrong: a line that names no class folder or leaves the
    folder, or a file listed in two splits (test leakage). The message names the file and line."""
