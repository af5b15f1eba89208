"""The data layer's errors: each one is a problem the user can fix, with a message that says how.

``python -m benchmark.data`` prints any :class:`DataError` as one ``error: ...`` line and exits 2.
"""
from __future__ import annotations


class DataError(Exception):
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
